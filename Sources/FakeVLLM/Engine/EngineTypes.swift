/// Identifies a request inside one engine. The server maps its string ids onto these.
public typealias RequestID = UInt64

/// Why a request left the engine, with vLLM's spelling (`finished_reason` label values).
public enum FinishReason: String, Sendable, CaseIterable {
    case stop, length, abort, error, repetition
}

/// The scheduler limits of one engine, named as vLLM's `SchedulerConfig` / `CacheConfig`.
public struct EngineConfig: Sendable, Equatable {
    public var maxNumSeqs: Int
    public var maxNumBatchedTokens: Int
    public var maxModelLen: Int
    public var blockSize: Int
    /// KV blocks on the (per-TP-rank) device, including vLLM's reserved null block.
    public var numGPUBlocks: Int
    public var enablePrefixCaching: Bool
    /// Prompts longer than this are prefilled in chunks of at most this many tokens per step (0: off).
    public var longPrefillTokenThreshold: Int
    /// Distinct adapters allowed in one batch; 0 when LoRA is disabled.
    public var maxLoras: Int
    /// Adapters kept in the host-memory LRU cache.
    public var maxCPULoras: Int
    /// How each step's batch is formed: vLLM V1's, or V0's before it.
    public var scheduling: Scheduling
    /// V0's `--num-scheduler-steps` (vLLM 0.6): a decode batch, once scheduled, runs this many
    /// forward passes with no scheduling in between (prefill steps stay single).
    public var numSchedulerSteps: Int

    /// vLLM's two schedulers. V1 (the default engine from vLLM 0.8.0) puts running requests
    /// first and fills the rest of the token budget with waiting prompts, chunked. V0 (0.5–0.7,
    /// `_schedule_default` in vllm/core/scheduler.py, chunked prefill off as it is by default
    /// there) admits waiting prompts first, whole and in order, and runs the running requests'
    /// decodes only in steps that admitted none: a step is all prefill or all decode.
    public enum Scheduling: String, Sendable, Equatable, Codable {
        case v1
        case v0

        /// `max_num_batched_tokens` when not given: V0 (chunked prefill off) takes whole
        /// prompts, so the whole context and at least 2048; V1 the device's default.
        public func defaultMaxNumBatchedTokens(maxModelLen: Int, deviceDefault: Int) -> Int {
            self == .v0 ? max(maxModelLen, 2048) : deviceDefault
        }

        /// Prefix caching when not asked for: on in V1, off in V0 (vLLM 0.6's EngineArgs).
        public var prefixCachingByDefault: Bool { self == .v1 }
    }

    /// V0's block manager admits a prompt only if 1 % of the blocks stay free after it
    /// (`watermark=0.01`), so running requests have room to grow.
    public var admissionWatermarkBlocks: Int {
        scheduling == .v0 ? Int(0.01 * Double(numGPUBlocks)) : 0
    }

    public init(
        maxNumSeqs: Int, maxNumBatchedTokens: Int, maxModelLen: Int, blockSize: Int = 16,
        numGPUBlocks: Int, enablePrefixCaching: Bool = true, longPrefillTokenThreshold: Int = 0,
        maxLoras: Int = 0, maxCPULoras: Int = 0, scheduling: Scheduling = .v1, numSchedulerSteps: Int = 1
    ) {
        self.scheduling = scheduling
        self.numSchedulerSteps = max(1, numSchedulerSteps)
        self.maxNumSeqs = maxNumSeqs
        self.maxNumBatchedTokens = maxNumBatchedTokens
        self.maxModelLen = maxModelLen
        self.blockSize = blockSize
        self.numGPUBlocks = numGPUBlocks
        self.enablePrefixCaching = enablePrefixCaching
        self.longPrefillTokenThreshold = longPrefillTokenThreshold
        self.maxLoras = maxLoras
        self.maxCPULoras = max(maxCPULoras, maxLoras)
    }
}

/// A LoRA adapter as the engine sees it: its name (the batching key) and its weight size.
public struct LoRAAdapter: Sendable, Hashable {
    public var name: String
    public var bytes: Int

    public init(name: String, bytes: Int) {
        self.name = name
        self.bytes = bytes
    }
}

/// One sequence to run. Its output is decided up front (deterministic per seed), so the
/// engine only has to decide *when* each token appears.
public struct EngineRequest: Sendable {
    public var id: RequestID
    public var promptTokens: [Int]
    /// The tokens this request will emit, in order; the request finishes after the last.
    public var plannedOutput: [Int]
    /// The reason reported when `plannedOutput` is exhausted (`stop` for EOS or a stop string,
    /// `length` for max_tokens).
    public var finishReason: FinishReason
    public var lora: LoRAAdapter?
    /// Emulated time the API server received the request (TTFT and e2e start here).
    public var arrival: Double
    /// The request's `max_tokens` parameter, for `vllm:request_params_max_tokens`.
    public var maxTokensParam: Int?

    public init(
        id: RequestID, promptTokens: [Int], plannedOutput: [Int], finishReason: FinishReason,
        lora: LoRAAdapter? = nil, arrival: Double, maxTokensParam: Int? = nil
    ) {
        self.id = id
        self.promptTokens = promptTokens
        self.plannedOutput = plannedOutput
        self.finishReason = finishReason
        self.lora = lora
        self.arrival = arrival
        self.maxTokensParam = maxTokensParam
    }
}

/// Timestamps of a request's life, in emulated seconds, as vLLM's `RequestStateStats`.
public struct RequestTimes: Sendable, Equatable {
    public var arrival: Double
    public var firstScheduled: Double?
    public var firstToken: Double?
    public var lastToken: Double?
}

/// A request that has left the engine, with what the metrics need.
public struct FinishedRequest: Sendable, Equatable {
    public var id: RequestID
    public var reason: FinishReason
    public var times: RequestTimes
    public var finishTime: Double
    public var promptTokens: Int
    public var generatedTokens: Int
    public var cachedPromptTokens: Int
    /// Prompt tokens found cached but computed again (the last block, so logits can be taken).
    public var recomputedPromptTokens: Int
    public var maxTokensParam: Int?
}

/// What one request got out of a step.
public struct RequestProgress: Sendable, Equatable {
    public var id: RequestID
    /// Indices into `plannedOutput` emitted this step (empty for a partial prefill chunk).
    public var newTokens: Range<Int>
    /// Prompt tokens found in the prefix cache when the request was first scheduled.
    public var cachedPromptTokens: Int
    /// When the API server received the request (time to first token starts here).
    public var arrival: Double
    /// Time of the previous token, for inter-token latency; nil for the first token.
    public var previousTokenTime: Double?
    /// Why the request left the engine, when it did this step (its record is in the step's
    /// `finished`: kept apart, as this is copied for every token).
    public var finishReason: FinishReason?
}

/// The result of one engine iteration. Tokens become visible at `end`.
public struct StepOutcome: Sendable {
    public var start: Double
    public var duration: Double
    public var end: Double { start + duration }
    /// Prompt + generation tokens run through the model this step.
    public var scheduledTokens: Int
    /// Prompt lengths of requests that produced their first token (vLLM counts prompt tokens then).
    public var promptTokensCompleted: Int
    public var generatedTokens: Int
    public var preemptions: Int
    public var prefixCacheQueries: Int
    public var prefixCacheHits: Int
    /// Per request with something to report: tokens or a finish.
    public var progress: [RequestProgress]
    /// The requests that left the engine this step, in the order of `progress`.
    public var finished: [FinishedRequest] = []
}
