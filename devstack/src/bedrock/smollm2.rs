//! The `smollm2` model: SmolLM2-135M-Instruct (GGUF, Q4_1) run on the CPU
//! with candle, one token per delta; a real language model behind the
//! ConverseStream stand-in.
//!
//! Place in the data path: resolver --ConverseStream--> Bedrock -> **model:
//! smollm2** --deltas--> resolver (coalescer -> publisher) -> AppSync ->
//! subscriber.
//!
//! - Weights: [`super::weights`] (pip, sha256, cache); loaded once, lazily, by
//!   `quantized_llama::ModelWeights::from_gguf`.
//! - Tokenizer: built from the GGUF metadata (`tokenizer.ggml.tokens`/`merges`,
//!   pre-tokenizer `smollm`) with the `tokenizers` crate: byte-level BPE, a
//!   pre-tokenizer of individual digits then GPT-2 byte-level splitting without a
//!   prefix space, a byte-level decoder, and the control tokens (`<|endoftext|>`,
//!   `<|im_start|>`, `<|im_end|>`, ...) registered as special.
//! - Prompt: ChatML, `<|im_start|>{role}\n{text}<|im_end|>\n` per message, then
//!   `<|im_start|>assistant\n`; system prompt [`DEFAULT_SYSTEM_PROMPT`] unless the
//!   request has one.
//! - Decoding: greedy when `temperature` is absent or 0, else candle's
//!   `LogitsProcessor` (seeded, with `topP`); repeat penalty
//!   [`REPEAT_PENALTY`] over the last [`REPEAT_LAST_N`] tokens. Stops at
//!   `<|im_end|>` (EOS, id 2), `<|endoftext|>`, or `maxTokens`
//!   (default [`DEFAULT_MAX_TOKENS`]).
//! - Streaming: each token's text is found by decoding all tokens so far and
//!   taking the new suffix, held back while it ends in an incomplete UTF-8
//!   sequence. Generation runs on a blocking thread, one at a time (the weights
//!   sit behind a mutex), and stops when the receiver is dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::quantized_llama::ModelWeights;
use candle_transformers::utils::apply_repeat_penalty;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};
use tokio::sync::{OnceCell, mpsc};

use super::model::{
    ActiveGuard, EVENT_BUFFER, Generation, GenerationRequest, ModelOutput, Role, StopReason,
};
use super::weights::{self, WeightsError};

/// The system prompt SmolLM2's chat template uses when none is given.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
/// Output tokens generated when the request sets no `maxTokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 256;
/// Repeat penalty applied to recently seen tokens' logits.
pub const REPEAT_PENALTY: f32 = 1.1;
/// How many recently generated tokens the repeat penalty looks at (the prompt
/// is not penalised, so the answer may reuse the question's words).
pub const REPEAT_LAST_N: usize = 64;

/// GGUF token type of control tokens (`<|im_start|>` ...), per llama.cpp.
const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF token type of user-defined added tokens.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Why the SmolLM2 model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum SmolLm2Error {
    /// The weights could not be fetched or verified.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The GGUF file could not be opened.
    #[error("open {path}: {source}")]
    Open {
        /// The GGUF path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The GGUF metadata lacks or mistypes a key we need.
    #[error("GGUF metadata: {0}")]
    Metadata(String),
    /// The tokenizer could not be built or failed on input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// candle failed (loading tensors or running the model).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The loading thread panicked or was cancelled.
    #[error("model loading task failed: {0}")]
    Join(String),
}

fn tok_err(e: impl std::fmt::Display) -> SmolLm2Error {
    SmolLm2Error::Tokenizer(e.to_string())
}

/// Sampling settings for one generation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Most output tokens to generate (EOS excluded).
    pub max_tokens: u32,
    /// `None` or `<= 0` means greedy (argmax) decoding.
    pub temperature: Option<f64>,
    /// Nucleus sampling threshold, used only with a temperature.
    pub top_p: Option<f64>,
    /// Seed of the sampler's RNG.
    pub seed: u64,
}

/// Timings of one finished generation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerationStats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (EOS excluded).
    pub output_tokens: usize,
    /// Time from the start of generation to the first sampled token (prompt prefill).
    pub first_token: Duration,
    /// Time from the start of generation to its end.
    pub total: Duration,
    /// Why it stopped; `None` when the consumer went away first.
    pub stop: Option<StopReason>,
}

impl GenerationStats {
    /// Decode speed after the first token, in tokens per second.
    pub fn tokens_per_second(&self) -> f64 {
        let decode = self.total.saturating_sub(self.first_token).as_secs_f64();
        if self.output_tokens <= 1 || decode <= 0.0 {
            return 0.0;
        }
        (self.output_tokens - 1) as f64 / decode
    }
}

/// A loaded SmolLM2: tokenizer plus weights (behind a mutex: one generation at a time).
pub struct SmolLm2 {
    tokenizer: Tokenizer,
    weights: Mutex<ModelWeights>,
    device: Device,
    stop_ids: Vec<u32>,
    context_length: usize,
}

impl std::fmt::Debug for SmolLm2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmolLm2")
            .field("stop_ids", &self.stop_ids)
            .field("context_length", &self.context_length)
            .finish_non_exhaustive()
    }
}

impl SmolLm2 {
    /// Loads the GGUF at `path` on the CPU. Blocking (about half a second).
    ///
    /// # Errors
    ///
    /// [`SmolLm2Error::Open`] when the file cannot be opened,
    /// [`SmolLm2Error::Metadata`] or [`SmolLm2Error::Tokenizer`] for metadata
    /// the tokenizer cannot be built from, [`SmolLm2Error::Candle`] when the
    /// tensors do not load.
    pub fn load(path: &Path) -> Result<Self, SmolLm2Error> {
        let mut file = File::open(path).map_err(|source| SmolLm2Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let content = gguf_file::Content::read(&mut file)?;
        let tokenizer = tokenizer_from_gguf(&content)?;
        let eos = content
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok())
            .unwrap_or(2);
        let mut stop_ids = vec![eos];
        for token in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = tokenizer.token_to_id(token)
                && !stop_ids.contains(&id)
            {
                stop_ids.push(id);
            }
        }
        let context_length = content
            .metadata
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .map_or(8192, |n| n as usize);
        let device = Device::Cpu;
        let weights = ModelWeights::from_gguf(content, &mut file, &device)?;
        Ok(Self {
            tokenizer,
            weights: Mutex::new(weights),
            device,
            stop_ids,
            context_length,
        })
    }

    /// The tokenizer built from the GGUF metadata.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model's context window in tokens (prompt plus output).
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Token ids of `text`, control tokens included (no BOS is added).
    ///
    /// # Errors
    ///
    /// [`SmolLm2Error::Tokenizer`] when the tokenizer fails on the text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, SmolLm2Error> {
        let encoding = self.tokenizer.encode(text, false).map_err(tok_err)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, control tokens skipped.
    ///
    /// # Errors
    ///
    /// [`SmolLm2Error::Tokenizer`] when the tokenizer cannot decode them.
    pub fn decode(&self, ids: &[u32]) -> Result<String, SmolLm2Error> {
        self.tokenizer.decode(ids, true).map_err(tok_err)
    }

    /// Runs one generation on the calling thread (blocking).
    ///
    /// `emit` receives each delta and then one `Done`; it returns `false` when
    /// the consumer is gone, which stops generation. `cancelled` is checked
    /// once the mutex is acquired, before the prompt is processed.
    ///
    /// # Errors
    ///
    /// [`SmolLm2Error::Candle`] when a forward pass or sampling fails,
    /// [`SmolLm2Error::Tokenizer`] when the output cannot be decoded; the
    /// deltas emitted before stay emitted.
    pub fn generate(
        &self,
        prompt_ids: &[u32],
        params: SamplingParams,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(ModelOutput) -> bool,
    ) -> Result<GenerationStats, SmolLm2Error> {
        let mut weights = self.weights.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let mut stats = GenerationStats {
            prompt_tokens: prompt_ids.len(),
            output_tokens: 0,
            first_token: Duration::ZERO,
            total: Duration::ZERO,
            stop: None,
        };
        if cancelled() || prompt_ids.is_empty() {
            return Ok(stats);
        }
        weights.clear_kv_cache();
        let temperature = params.temperature.filter(|t| *t > 0.0);
        let top_p = temperature.and(params.top_p);
        let mut sampler = LogitsProcessor::new(params.seed, temperature, top_p);

        let mut generated: Vec<u32> = Vec::new();
        let mut emitted = String::new();
        let mut unreported_tokens = 0u32;
        let mut input: Vec<u32> = prompt_ids.to_vec();
        let mut index_pos = 0usize;
        let mut stop = StopReason::MaxTokens;

        while generated.len() < params.max_tokens as usize {
            let x = Tensor::new(input.as_slice(), &self.device)?.unsqueeze(0)?;
            let logits = weights.forward(&x, index_pos)?;
            index_pos += input.len();
            let logits = logits.squeeze(0)?.to_dtype(DType::F32)?;
            let recent = &generated[generated.len().saturating_sub(REPEAT_LAST_N)..];
            let logits = apply_repeat_penalty(&logits, REPEAT_PENALTY, recent)?;
            let next = sampler.sample(&logits)?;
            if generated.is_empty() {
                stats.first_token = started.elapsed();
            }
            if self.stop_ids.contains(&next) {
                stop = StopReason::EndTurn;
                break;
            }
            generated.push(next);
            unreported_tokens += 1;
            stats.output_tokens = generated.len();

            let text = self.decode(&generated)?;
            if !text.ends_with('\u{FFFD}')
                && text.len() > emitted.len()
                && let Some(delta) = text.strip_prefix(emitted.as_str())
            {
                let delta = delta.to_owned();
                emitted = text;
                let tokens = std::mem::take(&mut unreported_tokens);
                if !emit(ModelOutput::Delta {
                    text: delta,
                    tokens,
                }) {
                    stats.total = started.elapsed();
                    return Ok(stats);
                }
            }
            if cancelled() {
                stats.total = started.elapsed();
                return Ok(stats);
            }
            input.clear();
            input.push(next);
        }

        stats.total = started.elapsed();
        stats.stop = Some(stop);
        emit(ModelOutput::Done {
            stop,
            output_tokens: u32::try_from(generated.len()).unwrap_or(u32::MAX),
        });
        Ok(stats)
    }
}

/// The ChatML prompt for a request, ending with the assistant header.
///
/// A trailing assistant message is continued (prefill) rather than closed.
pub fn chat_prompt(request: &GenerationRequest) -> String {
    let system = if request.system.is_empty() {
        DEFAULT_SYSTEM_PROMPT.to_owned()
    } else {
        request.system.join("\n")
    };
    let mut prompt = format!("<|im_start|>system\n{system}<|im_end|>\n");
    let last = request.messages.len().saturating_sub(1);
    for (i, m) in request.messages.iter().enumerate() {
        prompt.push_str("<|im_start|>");
        prompt.push_str(m.role.as_str());
        prompt.push('\n');
        prompt.push_str(&m.text);
        if i == last && m.role == Role::Assistant {
            return prompt;
        }
        prompt.push_str("<|im_end|>\n");
    }
    prompt.push_str("<|im_start|>assistant\n");
    prompt
}

fn metadata<'a>(
    content: &'a gguf_file::Content,
    key: &str,
) -> Result<&'a gguf_file::Value, SmolLm2Error> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| SmolLm2Error::Metadata(format!("missing {key}")))
}

fn string_array(content: &gguf_file::Content, key: &str) -> Result<Vec<String>, SmolLm2Error> {
    let bad = |e: candle_core::Error| SmolLm2Error::Metadata(format!("{key}: {e}"));
    metadata(content, key)?
        .to_vec()
        .map_err(bad)?
        .iter()
        .map(|v| v.to_string().cloned().map_err(bad))
        .collect()
}

fn int_value(v: &gguf_file::Value) -> Option<i64> {
    v.to_i32()
        .map(i64::from)
        .or_else(|_| v.to_u32().map(i64::from))
        .ok()
}

/// Builds SmolLM2's tokenizer from GGUF metadata (`tokenizer.ggml.*`).
///
/// Equivalent to the model's `tokenizer.json`: byte-level BPE over
/// `tokens`/`merges`; pre-tokenizer Sequence[Digits(individual),
/// ByteLevel(no prefix space, GPT-2 regex)]; byte-level decoder; control
/// tokens registered as special so ChatML markers encode to single ids and are
/// skipped when decoding.
///
/// # Errors
///
/// [`SmolLm2Error::Metadata`] for a missing or mistyped `tokenizer.ggml.*`
/// key or a model other than `gpt2`; [`SmolLm2Error::Tokenizer`] when the BPE
/// cannot be built from it.
pub fn tokenizer_from_gguf(content: &gguf_file::Content) -> Result<Tokenizer, SmolLm2Error> {
    let model = metadata(content, "tokenizer.ggml.model")?
        .to_string()
        .map_err(|e| SmolLm2Error::Metadata(e.to_string()))?;
    if model != "gpt2" {
        return Err(SmolLm2Error::Metadata(format!(
            "tokenizer.ggml.model is {model:?}, expected \"gpt2\""
        )));
    }
    let tokens = string_array(content, "tokenizer.ggml.tokens")?;
    let merges: Merges = string_array(content, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| SmolLm2Error::Metadata(format!("malformed merge {m:?}")))
        })
        .collect::<Result<_, _>>()?;
    let types: Vec<i64> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|e| SmolLm2Error::Metadata(format!("tokenizer.ggml.token_type: {e}")))?
            .iter()
            .map(|t| int_value(t).unwrap_or(1))
            .collect(),
        None => Vec::new(),
    };

    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(tok_err)?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevel::new(false, true, true)));

    let mut special = Vec::new();
    let mut added = Vec::new();
    for (token, kind) in tokens.iter().zip(types.iter()) {
        match *kind {
            TOKEN_TYPE_CONTROL => special.push(AddedToken::from(token.clone(), true)),
            TOKEN_TYPE_USER_DEFINED => added.push(AddedToken::from(token.clone(), false)),
            _ => {}
        }
    }
    tokenizer.add_special_tokens(special).map_err(tok_err)?;
    tokenizer.add_tokens(added).map_err(tok_err)?;
    Ok(tokenizer)
}

/// The lazily loaded model of one `BedrockState`.
#[derive(Debug)]
pub(crate) struct SmolLm2Slot {
    cell: OnceCell<Arc<SmolLm2>>,
    cache_dir: Option<PathBuf>,
}

impl SmolLm2Slot {
    pub(crate) fn new(cache_dir: Option<PathBuf>) -> Self {
        Self {
            cell: OnceCell::new(),
            cache_dir,
        }
    }

    /// The loaded model: fetched and loaded on first call (on a blocking
    /// thread), shared afterwards. Concurrent first calls wait for one load.
    pub(crate) async fn get(&self) -> Result<Arc<SmolLm2>, SmolLm2Error> {
        let cache_dir = self.cache_dir.clone();
        self.cell
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || load_cached(cache_dir.as_deref()))
                    .await
                    .map_err(|e| SmolLm2Error::Join(e.to_string()))?
                    .map(Arc::new)
            })
            .await
            .cloned()
    }
}

/// Fetches (if needed) and loads the model, logging how long the load took.
/// Blocking; `cache_dir` as in [`super::BedrockConfig::cache_dir`].
///
/// # Errors
///
/// [`SmolLm2Error::Weights`] when the weights cannot be fetched or verified,
/// and the errors of [`SmolLm2::load`].
pub fn load_cached(cache_dir: Option<&Path>) -> Result<SmolLm2, SmolLm2Error> {
    let root = weights::cache_root(cache_dir)?;
    let path = weights::ensure_smollm2(&root)?;
    let started = Instant::now();
    let model = SmolLm2::load(&path)?;
    tracing::info!(
        path = %path.display(),
        load_ms = started.elapsed().as_millis() as u64,
        "SmolLM2-135M-Instruct loaded"
    );
    Ok(model)
}

/// What `start` can refuse before streaming.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error(transparent)]
    Model(#[from] SmolLm2Error),
    #[error("{0}")]
    TooLong(String),
}

/// Starts a generation on a blocking thread and returns its event stream.
///
/// Errors: model loading failures, and a prompt that (with `maxTokens`) does
/// not fit the context window.
pub(crate) async fn start(
    slot: &SmolLm2Slot,
    request: &GenerationRequest,
    seed: u64,
    guard: ActiveGuard,
) -> Result<Generation, StartError> {
    let model = slot.get().await?;
    let prompt_ids = model.encode(&chat_prompt(request))?;
    let context = model.context_length();
    if prompt_ids.len() >= context {
        return Err(StartError::TooLong(format!(
            "Input is too long for requested model: {} prompt tokens, context window {context}.",
            prompt_ids.len()
        )));
    }
    let room = u32::try_from(context - prompt_ids.len()).unwrap_or(u32::MAX);
    let max_tokens = match request.max_tokens {
        Some(n) if n > room => {
            return Err(StartError::TooLong(format!(
                "Input is too long for requested model: {} prompt tokens plus maxTokens {n} exceed the context window {context}.",
                prompt_ids.len()
            )));
        }
        Some(n) => n,
        None => DEFAULT_MAX_TOKENS.min(room),
    };
    let params = SamplingParams {
        max_tokens,
        temperature: request.temperature.map(f64::from),
        top_p: request.top_p.map(f64::from),
        seed,
    };
    let input_tokens = u32::try_from(prompt_ids.len()).unwrap_or(u32::MAX);
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    tokio::task::spawn_blocking(move || {
        let _guard = guard;
        let closed_tx = tx.clone();
        let cancelled = move || closed_tx.is_closed();
        let mut emit = |event| tx.blocking_send(event).is_ok();
        match model.generate(&prompt_ids, params, &cancelled, &mut emit) {
            Ok(stats) => tracing::debug!(
                prompt_tokens = stats.prompt_tokens,
                output_tokens = stats.output_tokens,
                first_token_ms = stats.first_token.as_millis() as u64,
                tokens_per_second = stats.tokens_per_second(),
                cancelled = stats.stop.is_none(),
                "smollm2 generation finished"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "smollm2 generation failed");
                let _ = tx.blocking_send(ModelOutput::Failed {
                    message: e.to_string(),
                });
            }
        }
    });
    Ok(Generation {
        input_tokens,
        events: rx,
    })
}

#[cfg(test)]
mod tests {
    use super::super::model::ChatMessage;
    use super::*;

    /// The shared test model: fetched into the normal cache on first run.
    fn model() -> &'static SmolLm2 {
        static MODEL: std::sync::OnceLock<SmolLm2> = std::sync::OnceLock::new();
        MODEL.get_or_init(|| match load_cached(None) {
            Ok(m) => m,
            Err(e) => panic!("loading SmolLM2 for tests: {e}"),
        })
    }

    #[test]
    fn chat_prompt_is_chatml() {
        let req = GenerationRequest {
            messages: vec![ChatMessage {
                role: Role::User,
                text: "Hi!".into(),
            }],
            ..Default::default()
        };
        assert_eq!(
            chat_prompt(&req),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
        );
        let req = GenerationRequest {
            system: vec!["Be terse.".into()],
            messages: vec![
                ChatMessage {
                    role: Role::User,
                    text: "Hi!".into(),
                },
                ChatMessage {
                    role: Role::Assistant,
                    text: "Hello".into(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            chat_prompt(&req),
            "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello"
        );
    }

    #[test]
    fn tokenizer_round_trips_and_splits_digits() {
        let m = model();
        let text = "Hello, world! 123";
        let ids = m.encode(text).expect("encode");
        assert_eq!(m.decode(&ids).expect("decode"), text);
        // No prefix space: "Hello" is a single token without the leading 'Ġ'.
        let tok = m.tokenizer();
        assert_eq!(tok.id_to_token(ids[0]).as_deref(), Some("Hello"));
        // Digits are split one by one: "Ġ", "1", "2", "3".
        let last: Vec<String> = ids[ids.len() - 3..]
            .iter()
            .filter_map(|id| tok.id_to_token(*id))
            .collect();
        assert_eq!(last, vec!["1", "2", "3"]);

        let chat = m
            .encode("<|im_start|>user\nHi<|im_end|>\n")
            .expect("encode chat");
        assert_eq!(chat[0], 1, "<|im_start|> is one control token");
        assert!(chat.contains(&2), "<|im_end|> is one control token");
        assert_eq!(m.decode(&chat).expect("decode"), "user\nHi\n");
        assert_eq!(
            m.decode(&m.encode("héllo — ✓").expect("e")).expect("d"),
            "héllo — ✓"
        );
    }

    #[test]
    fn generates_english_greedily() {
        let m = model();
        let req = GenerationRequest {
            messages: vec![ChatMessage {
                role: Role::User,
                text: "Why is the sky blue?".into(),
            }],
            ..Default::default()
        };
        let ids = m.encode(&chat_prompt(&req)).expect("encode");
        let params = SamplingParams {
            max_tokens: 8,
            temperature: None,
            top_p: None,
            seed: 1,
        };
        let run = || {
            let mut events = Vec::new();
            let stats = m
                .generate(&ids, params, &|| false, &mut |e| {
                    events.push(e);
                    true
                })
                .expect("generate");
            (events, stats)
        };
        let (events, stats) = run();
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                ModelOutput::Delta { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        eprintln!(
            "smollm2: {:?} prompt={} out={} first_token={:?} total={:?} ({:.1} tok/s)",
            text,
            stats.prompt_tokens,
            stats.output_tokens,
            stats.first_token,
            stats.total,
            stats.tokens_per_second()
        );
        // English: a few words, nearly all ASCII letters, spaces and punctuation.
        let words: Vec<&str> = text.split_whitespace().collect();
        assert!(words.len() >= 3, "{text:?}");
        assert!(
            words.iter().any(|w| {
                let w = w.trim_matches(|c: char| !c.is_alphabetic()).to_lowercase();
                ["the", "sky", "blue", "is", "light", "because", "of"].contains(&w.as_str())
            }),
            "{text:?}"
        );
        assert!(
            text.chars().all(|c| c.is_ascii() || c == '\u{2019}'),
            "{text:?}"
        );
        let tokens: u32 = events
            .iter()
            .map(|e| match e {
                ModelOutput::Delta { tokens, .. } => *tokens,
                _ => 0,
            })
            .sum();
        match events.last() {
            Some(ModelOutput::Done {
                output_tokens,
                stop,
            }) => {
                assert!(*output_tokens <= 8);
                assert!(tokens <= *output_tokens);
                assert!(matches!(stop, StopReason::MaxTokens | StopReason::EndTurn));
            }
            other => panic!("expected Done, got {other:?}"),
        }
        // Greedy decoding is deterministic.
        let (again, _) = run();
        assert_eq!(again, events);
    }
}
