//! The `scripted` model: deterministic text, no weights. A fixed passage,
//! streamed as deltas of 1 to 3 words at a configurable pace, so tests and
//! benches get a deterministic, readable answer.
//!
//! Place in the data path: resolver --ConverseStream--> Bedrock -> **model:
//! scripted** --deltas--> resolver (coalescer -> publisher) -> AppSync ->
//! subscriber.
//!
//! The answer is `You asked: "<first 80 chars of the prompt>". ` followed by
//! [`PASSAGE`] (or [`MARKDOWN_PASSAGE`] when the prompt starts with
//! [`MARKDOWN_MARKER`], or [`escapes_passage`] when it starts with
//! [`ESCAPES_MARKER`]). It is cut into words (each word carries the whitespace before
//! it, so the pieces concatenate to the exact text) and sent as deltas of 1, 2
//! or 3 words following [`DELTA_PATTERN`]. A word counts as one token, for
//! `maxTokens` and for `usage`; input tokens are the words of the system
//! prompt and of every message.

use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::model::{
    ActiveGuard, EVENT_BUFFER, Generation, GenerationRequest, ModelOutput, StopReason, word_count,
};

/// The fixed text the `scripted` model streams after echoing the prompt.
pub const PASSAGE: &str = "Streaming turns a long wait into a conversation. Instead of holding the whole answer until the last word is ready, the model hands over each fragment the moment it exists, and the reader starts reading while the rest is still being written.

Each fragment travels a short chain. The model emits a delta of a few tokens; a coalescer gathers deltas into chunks that are worth the cost of a network message; a publisher signs each chunk and sends it to the GraphQL API; and the API pushes it down a WebSocket to every subscriber allowed to see it. Nothing in that chain may hold a fragment longer than it must, and nothing may reorder them.

Good streaming is judged at both ends. The first words should arrive quickly, so the reader knows the question was heard. The last words should follow without long pauses, so the text reads like speech rather than a stutter. And when the reader loses interest and closes the window, the whole chain should notice and stop, because every token nobody reads is time and money spent for nothing.";

/// A prompt whose first word is this is answered with [`MARKDOWN_PASSAGE`]
/// instead of [`PASSAGE`], for clients that render Markdown.
pub const MARKDOWN_MARKER: &str = "/markdown";

/// The passage for [`MARKDOWN_MARKER`] prompts: a list, an ordered list and
/// a fenced code block.
pub const MARKDOWN_PASSAGE: &str = "Here is how a streamed answer travels:

- the model emits a delta of a few tokens
- a coalescer gathers deltas into chunks
- a publisher sends each chunk to the GraphQL API

What a client does, in order:

1. subscribe and wait for the acknowledgement
2. send the prompt with a turn id of its own
3. put the chunks in `seq` order and drop repeats

A chunk as the client receives it:

```json
{\"turnId\": \"t-1\", \"seq\": 0, \"text\": \"Hello\", \"done\": false}
```

That is the whole path, end to end.";

/// A prompt whose first word is this is answered with [`escapes_passage`]:
/// text that JSON inflates the most, for tests of message size limits.
pub const ESCAPES_MARKER: &str = "/escapes";

/// The control characters JSON writes as six bytes each (`\u00XX`, RFC 8259
/// section 7): U+0001 to U+001F without the five that have two-byte escapes
/// (`\b \t \n \f \r`) and U+000B, which is whitespace and would split words.
const SIX_BYTE_ESCAPES: [char; 25] = [
    '\u{1}', '\u{2}', '\u{3}', '\u{4}', '\u{5}', '\u{6}', '\u{7}', '\u{e}', '\u{f}', '\u{10}',
    '\u{11}', '\u{12}', '\u{13}', '\u{14}', '\u{15}', '\u{16}', '\u{17}', '\u{18}', '\u{19}',
    '\u{1a}', '\u{1b}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{1f}',
];

/// Words of [`escapes_passage`].
const ESCAPES_WORDS: usize = 120;
/// Characters per word of [`escapes_passage`].
const ESCAPES_WORD_CHARS: usize = 1000;

/// The passage for [`ESCAPES_MARKER`] prompts: 120 words of 1,000 characters
/// from [`SIX_BYTE_ESCAPES`], one space between words (about 120 KB, which
/// JSON writes as about 720 KB). Long words keep the spaces, which JSON does
/// not inflate, under 0.1% of the text.
pub fn escapes_passage() -> &'static str {
    static PASSAGE: LazyLock<String> = LazyLock::new(|| {
        let word = |w: usize| -> String {
            (0..ESCAPES_WORD_CHARS)
                .map(|i| SIX_BYTE_ESCAPES[(w + i) % SIX_BYTE_ESCAPES.len()])
                .collect()
        };
        (0..ESCAPES_WORDS).map(word).collect::<Vec<_>>().join(" ")
    });
    &PASSAGE
}

/// Words per delta, repeated: deterministic, between 1 and 3 like a real model.
pub const DELTA_PATTERN: [usize; 8] = [1, 2, 3, 2, 1, 3, 2, 1];

/// How many characters of the prompt the answer echoes.
pub const ECHO_CHARS: usize = 80;

/// The whole answer for `prompt` under `max_tokens`, and its output token count.
///
/// The deltas the model streams for the same prompt concatenate to exactly this
/// text. With `max_tokens` below the answer's length the text is cut after that
/// many words (and the stream's stop reason is `max_tokens`).
pub fn scripted_answer(prompt: &str, max_tokens: Option<u32>) -> (String, u32) {
    let (deltas, _) = plan(&full_text(prompt), max_tokens);
    let tokens = deltas.iter().map(|(_, n)| *n).sum();
    let text = deltas.into_iter().map(|(t, _)| t).collect();
    (text, tokens)
}

/// The untruncated answer text for `prompt`.
fn full_text(prompt: &str) -> String {
    let collapsed = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    let echo: String = collapsed.chars().take(ECHO_CHARS).collect();
    format!(
        "You asked: \"{}\". {}",
        echo.trim_end(),
        passage_for(prompt)
    )
}

/// The passage a prompt's first word chooses: [`MARKDOWN_PASSAGE`],
/// [`escapes_passage`], or else [`PASSAGE`].
fn passage_for(prompt: &str) -> &'static str {
    match prompt.split_whitespace().next() {
        Some(MARKDOWN_MARKER) => MARKDOWN_PASSAGE,
        Some(ESCAPES_MARKER) => escapes_passage(),
        _ => PASSAGE,
    }
}

/// How the `scripted` model paces and sizes its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedOptions {
    /// Words (tokens) per second; 0 or less: as fast as the client reads.
    pub tokens_per_second: f64,
    /// When set, the pause before each delta is drawn uniformly from this range
    /// instead (the shape of a recorded Claude stream: 20 to 50 ms), seeded.
    pub gaps: Option<(Duration, Duration)>,
    /// Repeat the passage until `maxTokens`, for answers of a chosen length.
    pub repeat: bool,
    /// Seed of the pause draws of [`Self::gaps`], so a run can be repeated.
    pub seed: u64,
}

/// One delta as it left the model: when, the answer's length in bytes after
/// it, and its tokens (for `devstack bench`: receive time minus emit time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Emission {
    /// When the delta left the model (just before it is sent to the body).
    pub at: std::time::Instant,
    /// The answer's length in bytes once this delta is appended.
    pub end_bytes: usize,
    /// The output tokens (words) of the delta.
    pub tokens: u32,
}

/// The emissions of the latest `scripted` answer.
pub type Emissions = std::sync::Arc<std::sync::Mutex<Vec<Emission>>>;

/// The answer text, with the passage repeated up to `max_tokens` words when asked.
fn answer_text(prompt: &str, max_tokens: Option<u32>, repeat: bool) -> String {
    let mut text = full_text(prompt);
    let wanted = max_tokens.map_or(0, |m| m as usize);
    while repeat && words(&text).len() < wanted {
        text.push_str("\n\n");
        text.push_str(passage_for(prompt));
    }
    text
}

/// Splits text into words, each with the whitespace that precedes it.
fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                out.push(&text[start..i]);
                start = i;
                in_word = false;
            }
        } else {
            in_word = true;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// The deltas (text, words) for `prompt`, and the stop reason.
fn plan(text: &str, max_tokens: Option<u32>) -> (Vec<(String, u32)>, StopReason) {
    let all = words(text);
    let limit = max_tokens.map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let (kept, stop) = if all.len() > limit {
        (&all[..limit], StopReason::MaxTokens)
    } else {
        (&all[..], StopReason::EndTurn)
    };
    let mut deltas = Vec::new();
    let mut rest = kept;
    for size in DELTA_PATTERN.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let n = (*size).min(rest.len());
        let (head, tail) = rest.split_at(n);
        deltas.push((head.concat(), n as u32));
        rest = tail;
    }
    (deltas, stop)
}

/// Starts a scripted generation on a tokio task.
///
/// `tokens_per_second` paces the deltas (a delta of `n` words is due `n / rate`
/// seconds after the previous one); 0 or less sends them as fast as the client
/// reads. The task ends as soon as the receiver is dropped, even mid-pause.
pub(crate) fn start(
    request: &GenerationRequest,
    options: &ScriptedOptions,
    emissions: Emissions,
    guard: ActiveGuard,
) -> Generation {
    use rand::{Rng, SeedableRng};
    let tokens_per_second = options.tokens_per_second;
    let gaps = options.gaps;
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let input_tokens = request
        .system
        .iter()
        .map(|s| word_count(s))
        .chain(request.messages.iter().map(|m| word_count(&m.text)))
        .fold(0u32, u32::saturating_add);
    let text = answer_text(request.last_user_text(), request.max_tokens, options.repeat);
    let (deltas, stop) = plan(&text, request.max_tokens);
    if let Ok(mut log) = emissions.lock() {
        log.clear();
    }
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    tokio::spawn(async move {
        let _guard = guard;
        let mut due = Instant::now();
        let mut output_tokens = 0u32;
        let mut emitted_bytes = 0;
        for (text, tokens) in deltas {
            let pause = match gaps {
                Some((low, high)) => Some(rng.gen_range(low..=high)),
                None if tokens_per_second > 0.0 => Some(Duration::from_secs_f64(
                    f64::from(tokens) / tokens_per_second,
                )),
                None => None,
            };
            if let Some(pause) = pause {
                due += pause;
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = tx.closed() => return,
                }
            }
            output_tokens += tokens;
            emitted_bytes += text.len();
            if let Ok(mut log) = emissions.lock() {
                log.push(Emission {
                    at: std::time::Instant::now(),
                    end_bytes: emitted_bytes,
                    tokens,
                });
            }
            if tx.send(ModelOutput::Delta { text, tokens }).await.is_err() {
                return;
            }
        }
        let _ = tx
            .send(ModelOutput::Done {
                stop,
                output_tokens,
            })
            .await;
    });
    Generation {
        input_tokens,
        events: rx,
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::{ActiveCounter, ChatMessage, Role};
    use super::*;

    #[test]
    fn a_markdown_prompt_gets_a_list_and_a_code_block_with_its_newlines() {
        let (text, _) = scripted_answer("/markdown hi", None);
        assert!(
            text.starts_with("You asked: \"/markdown hi\". Here is"),
            "{text}"
        );
        for part in ["\n\n- ", "\n\n1. ", "\n```json\n"] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        assert!(scripted_answer("hi /markdown", None).0.contains(PASSAGE));
    }

    fn paced(tokens_per_second: f64) -> ScriptedOptions {
        ScriptedOptions {
            tokens_per_second,
            gaps: None,
            repeat: false,
            seed: 1,
        }
    }

    #[tokio::test]
    async fn recorded_gaps_and_repetition_give_a_long_logged_answer() {
        let counter = ActiveCounter::default();
        let options = ScriptedOptions {
            tokens_per_second: 0.0,
            gaps: Some((Duration::from_millis(1), Duration::from_millis(2))),
            repeat: true,
            seed: 7,
        };
        let log = Emissions::default();
        let generation = start(
            &request("hi", Some(500)),
            &options,
            log.clone(),
            counter.enter(),
        );
        let (text, sizes, _) = collect(generation).await;
        assert_eq!(sizes.iter().sum::<u32>(), 500);
        let log = log.lock().expect("log").clone();
        assert_eq!(log.len(), sizes.len());
        assert_eq!(log.last().map(|e| e.end_bytes), Some(text.len()));
        // The pauses keep a schedule: a late wake-up is caught up, so only
        // the whole span is bounded by the shortest gap.
        let span = log
            .last()
            .map(|e| e.at)
            .zip(log.first().map(|e| e.at))
            .map(|(l, f)| l - f);
        assert!(
            span >= Some(Duration::from_millis(1) * (log.len() as u32 - 1)),
            "{span:?}"
        );
    }

    fn request(prompt: &str, max_tokens: Option<u32>) -> GenerationRequest {
        GenerationRequest {
            system: vec!["Be nice.".into()],
            messages: vec![ChatMessage {
                role: Role::User,
                text: prompt.into(),
            }],
            max_tokens,
            ..Default::default()
        }
    }

    async fn collect(mut generation: Generation) -> (String, Vec<u32>, ModelOutput) {
        let mut text = String::new();
        let mut sizes = Vec::new();
        while let Some(event) = generation.events.recv().await {
            match event {
                ModelOutput::Delta { text: t, tokens } => {
                    text.push_str(&t);
                    sizes.push(tokens);
                }
                done => return (text, sizes, done),
            }
        }
        panic!("stream ended without a terminal event");
    }

    #[test]
    fn words_keep_every_character() {
        let text = "Hello  there,\n\nworld! ";
        assert_eq!(words(text), vec!["Hello", "  there,", "\n\nworld!", " "]);
        assert_eq!(words(text).concat(), text);
        assert!(words("").is_empty());
    }

    #[test]
    fn answer_echoes_the_prompt() {
        let long = "word ".repeat(40);
        let (text, tokens) = scripted_answer(&long, None);
        let echo = "word ".repeat(16);
        assert!(text.starts_with(&format!("You asked: \"{}\". ", echo.trim_end())));
        assert!(text.ends_with("time and money spent for nothing."));
        assert_eq!(tokens, word_count(&text));

        let (text, _) = scripted_answer("Why is the sky\nblue?", None);
        assert!(text.starts_with("You asked: \"Why is the sky blue?\". Streaming turns"));
    }

    #[test]
    fn max_tokens_truncates_by_words() {
        let (full, full_tokens) = scripted_answer("hi", None);
        assert!(full_tokens > 100);
        let (cut, tokens) = scripted_answer("hi", Some(10));
        assert_eq!(tokens, 10);
        assert_eq!(word_count(&cut), 10);
        assert!(full.starts_with(&cut));
        assert_eq!(plan(&full_text("hi"), Some(10)).1, StopReason::MaxTokens);
        assert_eq!(
            plan(&full_text("hi"), Some(full_tokens)).1,
            StopReason::EndTurn
        );
    }

    #[tokio::test]
    async fn deltas_concatenate_to_the_answer() {
        let counter = ActiveCounter::default();
        let prompt = "Tell me about streaming, please.";
        let generation = start(
            &request(prompt, None),
            &paced(0.0),
            Emissions::default(),
            counter.enter(),
        );
        assert_eq!(generation.input_tokens, 2 + 5);
        let (text, sizes, done) = collect(generation).await;
        let (expected, tokens) = scripted_answer(prompt, None);
        assert_eq!(text, expected);
        assert!(sizes.iter().all(|n| (1..=3).contains(n)));
        assert!(sizes.len() > 50);
        assert_eq!(
            done,
            ModelOutput::Done {
                stop: StopReason::EndTurn,
                output_tokens: tokens
            }
        );
    }

    #[tokio::test]
    async fn deltas_respect_max_tokens() {
        let counter = ActiveCounter::default();
        let generation = start(
            &request("hi", Some(17)),
            &paced(0.0),
            Emissions::default(),
            counter.enter(),
        );
        let (text, sizes, done) = collect(generation).await;
        assert_eq!(text, scripted_answer("hi", Some(17)).0);
        assert_eq!(sizes.iter().sum::<u32>(), 17);
        assert_eq!(
            done,
            ModelOutput::Done {
                stop: StopReason::MaxTokens,
                output_tokens: 17
            }
        );
    }

    #[tokio::test]
    async fn pacing_follows_the_rate() {
        let counter = ActiveCounter::default();
        let started = std::time::Instant::now();
        let generation = start(
            &request("hi", Some(20)),
            &paced(200.0),
            Emissions::default(),
            counter.enter(),
        );
        let _ = collect(generation).await;
        let elapsed = started.elapsed();
        // 20 words at 200 words/s = 100 ms.
        assert!(elapsed >= Duration::from_millis(95), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
    }

    #[tokio::test]
    async fn dropping_the_receiver_stops_the_task() {
        let counter = ActiveCounter::default();
        let mut generation = start(
            &request("hi", None),
            &paced(5.0),
            Emissions::default(),
            counter.enter(),
        );
        assert_eq!(counter.get(), 1);
        let first = generation.events.recv().await;
        assert!(matches!(first, Some(ModelOutput::Delta { .. })));
        drop(generation);
        for _ in 0..50 {
            if counter.get() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("scripted task still running after its receiver was dropped");
    }
}
