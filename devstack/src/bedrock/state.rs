//! The Bedrock stand-in's configuration and shared state: the settings it
//! starts with, the lazily loaded `smollm2`, the fault switch, and the
//! counters tests and `devstack bench` read.
//!
//! Place in the data path: resolver Lambda --ConverseStream--> Bedrock
//! endpoint -> **state (which model, which fault)** -> model -> event-stream
//! body -> resolver.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::BedrockError;
use super::model::{ActiveCounter, ChatMessage, Generation, GenerationRequest, ModelId};
use super::scripted::{self, Emission, Emissions, ScriptedOptions};
use super::smollm2::{self, SmolLm2Slot, StartError};
use super::stream::Fault;

/// Settings of the Bedrock stand-in.
#[derive(Debug, Clone, PartialEq)]
pub struct BedrockConfig {
    /// Pace of the `scripted` model in words (tokens) per second; 0 = as fast
    /// as the client reads. Default 50.
    pub scripted_tokens_per_second: f64,
    /// Cache root for model weights (`models/` under it). `None`: the
    /// `$DEVSTACK_CACHE_DIR`, `$XDG_CACHE_HOME`, `$HOME/.cache` chain.
    pub cache_dir: Option<PathBuf>,
    /// Seed of `smollm2`'s sampler when a request sets a temperature > 0.
    pub seed: u64,
    /// A fault injected into every request from the start (see [`Fault`]).
    pub fault: Option<Fault>,
    /// `scripted`: pauses drawn from this range instead of the rate (seeded with `seed`).
    pub scripted_gaps: Option<(Duration, Duration)>,
    /// `scripted`: repeat the passage up to `maxTokens`.
    pub scripted_repeat: bool,
}

impl Default for BedrockConfig {
    fn default() -> Self {
        Self {
            scripted_tokens_per_second: 50.0,
            cache_dir: None,
            seed: 299_792_458,
            fault: None,
            scripted_gaps: None,
            scripted_repeat: false,
        }
    }
}

/// How many requests' `messages` [`BedrockState::conversations`] keeps.
pub(super) const KEPT_CONVERSATIONS: usize = 64;

struct Inner {
    config: BedrockConfig,
    smollm2: SmolLm2Slot,
    active: ActiveCounter,
    fault: Mutex<Option<Fault>>,
    requests: AtomicU64,
    emissions: Emissions,
    conversations: Mutex<Vec<Vec<ChatMessage>>>,
}

/// Shared state of the Bedrock stand-in: configuration, the lazily loaded
/// models, the fault switch. Cheap to clone.
#[derive(Clone)]
pub struct BedrockState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BedrockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockState")
            .field("config", &self.inner.config)
            .field("active_generations", &self.active_generations())
            .finish()
    }
}

impl BedrockState {
    /// A state with nothing loaded yet; `smollm2` loads on first use or [`Self::warm`].
    pub fn new(config: BedrockConfig) -> Self {
        let fault = Mutex::new(config.fault.clone());
        Self {
            inner: Arc::new(Inner {
                smollm2: SmolLm2Slot::new(config.cache_dir.clone()),
                active: ActiveCounter::default(),
                fault,
                requests: AtomicU64::new(0),
                emissions: Emissions::default(),
                conversations: Mutex::new(Vec::new()),
                config,
            }),
        }
    }

    /// When each delta of the latest `scripted` answer left the model, with the
    /// answer's length in bytes after it.
    pub fn last_emissions(&self) -> Vec<Emission> {
        self.inner
            .emissions
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// The configuration this state was built with.
    pub fn config(&self) -> &BedrockConfig {
        &self.inner.config
    }

    /// Loads `model_id` ahead of the first request (for `smollm2`: fetches the
    /// weights if needed, then loads them; a no-op for `scripted`).
    ///
    /// # Errors
    ///
    /// [`BedrockError::ModelNotFound`] for an id this stand-in does not serve;
    /// [`BedrockError::Model`] when the SmolLM2 weights cannot be fetched or
    /// loaded.
    pub async fn warm(&self, model_id: &str) -> Result<(), BedrockError> {
        match ModelId::resolve(model_id)? {
            ModelId::Scripted => Ok(()),
            ModelId::SmolLm2 => self
                .inner
                .smollm2
                .get()
                .await
                .map(|_| ())
                .map_err(Into::into),
        }
    }

    /// Generations whose model is still running (they end shortly after their
    /// response body is dropped).
    pub fn active_generations(&self) -> usize {
        self.inner.active.get()
    }

    /// ConverseStream requests received so far, refused ones included (e.g. to
    /// see that the SDK retried a throttled call).
    pub fn requests_served(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// The `messages` of the latest valid ConverseStream requests (at most
    /// [`KEPT_CONVERSATIONS`]), in arrival order: what each model call was
    /// given, history included.
    pub fn conversations(&self) -> Vec<Vec<ChatMessage>> {
        self.inner
            .conversations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Remembers a valid request's `messages` (see [`Self::conversations`]).
    pub(super) fn record_conversation(&self, messages: &[ChatMessage]) {
        let mut kept = self
            .inner
            .conversations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT_CONVERSATIONS {
            kept.remove(0);
        }
        kept.push(messages.to_vec());
    }

    /// Sets (or clears) the fault injected into every following request.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.inner.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Counts one ConverseStream request, before anything can refuse it.
    pub(super) fn count_request(&self) {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The fault set now, applied to the request being handled.
    pub(super) fn fault(&self) -> Option<Fault> {
        self.inner
            .fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts a generation with `model`, without HTTP: the events a
    /// ConverseStream response would carry, before framing and stop sequences.
    ///
    /// # Errors
    ///
    /// For `smollm2`: [`BedrockError::Model`] when the weights cannot be
    /// fetched or loaded, [`BedrockError::InputTooLong`] when the prompt (with
    /// `maxTokens`) does not fit the context window. `scripted` always starts.
    pub async fn generate(
        &self,
        model: ModelId,
        request: &GenerationRequest,
    ) -> Result<Generation, BedrockError> {
        let guard = self.inner.active.enter();
        match model {
            ModelId::Scripted => Ok(scripted::start(
                request,
                &self.scripted_options(),
                self.inner.emissions.clone(),
                guard,
            )),
            ModelId::SmolLm2 => {
                smollm2::start(&self.inner.smollm2, request, self.inner.config.seed, guard)
                    .await
                    .map_err(|e| match e {
                        StartError::Model(e) => BedrockError::Model(e),
                        StartError::TooLong(m) => BedrockError::InputTooLong(m),
                    })
            }
        }
    }

    /// The `scripted` model's pacing, from the configuration.
    fn scripted_options(&self) -> ScriptedOptions {
        let config = &self.inner.config;
        ScriptedOptions {
            tokens_per_second: config.scripted_tokens_per_second,
            gaps: config.scripted_gaps,
            repeat: config.scripted_repeat,
            seed: config.seed,
        }
    }
}
