import Foundation
import InferenceAPI

/// Everything `understudy serve` is told, named after `vllm serve`'s flags. Unset values take
/// vLLM's defaults for the profiled device.
public struct ServerConfiguration: Sendable {
    public var model: String = "meta-llama/Meta-Llama-3-8B"
    public var servedModelNames: [String] = []
    public var host: String = "0.0.0.0"
    public var port: Int = 8000
    /// Context length; nil: the model's; `fitMaxModelLen`: the longest the KV cache holds.
    public var maxModelLen: Int?
    /// vLLM's `--dtype`: "auto" keeps the model's precision; "float"/"float32" doubles it.
    public var dtype: String = "auto"
    public var maxNumSeqs: Int?
    public var maxNumBatchedTokens: Int?
    public var blockSize: Int = 16
    public var gpuMemoryUtilization: Double = 0.9
    public var tensorParallelSize: Int = 1
    /// `--quantization`: nil (the model's dtype) or "fp8".
    public var quantization: String?
    /// `--kv-cache-dtype`: "auto" or an fp8 variant ("fp8", "fp8_e4m3", "fp8_e5m2").
    public var kvCacheDtype: String = "auto"
    /// `--enable-prefix-caching` / `--no-enable-prefix-caching`; nil: the engine's default (on in
    /// V1, off in V0).
    public var enablePrefixCaching: Bool?
    /// `--num-scheduler-steps` (vLLM V0, 0.6–0.10): decode passes per scheduler call.
    public var numSchedulerSteps: Int = 1
    public var enableLoRA: Bool = false
    public var maxLoras: Int = 1
    public var maxCPULoras: Int?
    public var maxLoRARank: Int = 16
    public var loraModules: [LoRAModule] = []
    public var apiKey: String?
    public var seed: UInt64 = 0
    public var enablePromptTokensDetails: Bool = false
    public var enableServerLoadTracking: Bool = false
    /// Set by the environment variable VLLM_ALLOW_RUNTIME_LORA_UPDATING, as in vLLM.
    public var allowRuntimeLoRAUpdating: Bool = false
    /// `--enable-auto-tool-choice`: the model may answer with tool calls on its own.
    public var enableAutoToolChoice: Bool = false
    /// `--tool-call-parser`: how tool calls are written in the model's text (hermes, llama3_json…).
    public var toolCallParser: String?
    /// `--tokenizer`: a tokenizer.json (or a directory holding one) to count and write tokens
    /// with; nil: the model directory's, if `--model` is one, else the built-in approximation.
    public var tokenizer: String?
    // Ours.
    public var accelerator: String = "h100-sxm"
    public var modelProfile: String?
    /// The engine generation (profiles/engines): how it schedules and its CPU time per step.
    public var engineProfile: String = ServerConfiguration.defaultEngineProfile
    public var timeScale: Double = 1
    /// Seconds of emulated model loading before /health turns 200; infinity waits for
    /// `VLLMServer.markReady()`.
    public var startupDelay: Double = 0
    public var showHiddenMetricsForVersion: String?
    /// Largest request body accepted, bytes.
    public var maxBodyBytes: Int = 16 * 1024 * 1024
    /// The most work one generation request may ask for (see `RequestBudget`).
    public var requestBudget = RequestBudget()
    /// Header, body and keep-alive timeouts and head limits of the listener.
    public var connectionLimits = ConnectionLimits.pod
    /// `--ssl-certfile`, `--ssl-keyfile`, `--ssl-ca-certs`, `--ssl-cert-reqs`: serve HTTPS.
    public var tls: ServerTLS?
    /// Off with `--disable-log-stats`: no periodic engine stats line.
    public var logStats = true
    /// vLLM's `VLLM_LOG_STATS_INTERVAL`: seconds between engine stats lines.
    public var logStatsInterval = 10.0
    /// Off with `--disable-uvicorn-access-log`: no access line per request.
    public var accessLog = true

    public init() {}

    /// `--max-model-len auto` (or -1): as long as one request can be and still fit the KV cache.
    public static let fitMaxModelLen = -1

    /// vLLM V1, the engine of every vLLM since 0.8 (and the only one since 0.11).
    public static let defaultEngineProfile = "vllm-v1"

    /// The name clients use and metrics carry: the first served name, else the model.
    public var primaryModelName: String { servedModelNames.first ?? model }
}

extension ServerConfiguration {
    /// The weight and KV-cache precision the flags ask for.
    public func precision() throws -> Precision {
        switch quantization {
        case nil, "none"?: break
        case "fp8"?: break
        case let other?: throw ProfileError("--quantization \(other) is not emulated (supported: fp8)")
        }
        guard ["auto", "fp8", "fp8_e4m3", "fp8_e5m2"].contains(kvCacheDtype) else {
            throw ProfileError("--kv-cache-dtype \(kvCacheDtype) is not one of auto, fp8, fp8_e4m3, fp8_e5m2")
        }
        return Precision(fp8Weights: quantization == "fp8", fp8KVCache: kvCacheDtype != "auto")
    }
}

/// Bounds on one generation request, so that no single request can stall or exhaust a process
/// that many emulated pods share. `maxN` is vLLM's own (`VLLM_MAX_N_SEQUENCES`, added after
/// 0.11.0, whose n was unbounded); the other two are Understudy's, far above what clients send
/// (vLLM's benchmarks use n = 1 and max_tokens in the thousands).
public struct RequestBudget: Sendable, Equatable {
    /// The largest `n` (vLLM's `VLLM_MAX_N_SEQUENCES`, default 16384).
    public var maxN = 16384
    /// Sequences a request may ask for: its prompts × n.
    public var maxSequences = 16384
    /// Output entries a request could produce at most: Σ over sequences of max_tokens, each
    /// token counted once more per top logprob asked for (about 90 MB of planned output at most).
    public var maxOutputEntries = 1 << 22
    /// Stop-string checks a request may cost: its output entries × its stop strings.
    public var maxStopChecks = 1 << 26

    public init() {}
}

extension EngineSetup {
    /// `--tokenizer` (a tokenizer.json or a directory holding one), else the tokenizer.json of
    /// a local `--model` directory, else the built-in approximation.
    static func loadTokenizer(_ configuration: ServerConfiguration) throws -> any TextTokenizer {
        var file: String?
        if let given = configuration.tokenizer {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: given, isDirectory: &isDirectory) else {
                throw ProfileError("--tokenizer \(given): no such file or directory (the emulator reads a local tokenizer.json; it downloads nothing)")
            }
            file = isDirectory.boolValue ? URL(fileURLWithPath: given).appendingPathComponent("tokenizer.json").path : given
        } else {
            let candidate = URL(fileURLWithPath: configuration.model).appendingPathComponent("tokenizer.json").path
            if FileManager.default.fileExists(atPath: candidate) { file = candidate }
        }
        guard let file else { return Tokenizer.shared }
        let tokenizer: HuggingFaceTokenizer
        do {
            tokenizer = try HuggingFaceTokenizer(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw ProfileError("cannot use the tokenizer \(file): \(error)")
        }
        guard tokenizer.eosTokenID != nil else {
            throw ProfileError("the tokenizer \(file) names no end-of-sequence token (<|endoftext|>, <|end_of_text|>, <|eot_id|>, </s> or <|im_end|>)")
        }
        return tokenizer
    }
}

/// One `--lora-modules` entry: `name=path`, or the JSON form with `base_model_name`.
public struct LoRAModule: Sendable, Equatable {
    public var name: String
    public var path: String
    public var baseModelName: String?

    public init(name: String, path: String, baseModelName: String? = nil) {
        self.name = name
        self.path = path
        self.baseModelName = baseModelName
    }
}

/// The resolved pieces a server or a prediction runs with.
public struct EngineSetup: Sendable {
    public var accelerator: AcceleratorProfile
    public var model: ModelProfile
    /// The engine generation: its scheduler and CPU time per step.
    public var engine: EngineProfile
    public var costModel: CostModel
    public var engineConfig: EngineConfig
    /// Set when no profile named the model and one was derived: what was assumed, for a warning.
    public var modelAssumption: String?
    /// The tokenizer prompts are counted with: the model's own tokenizer.json when given.
    public var tokenizer: any TextTokenizer = Tokenizer.shared

    /// Resolves profiles and fills vLLM's defaults. Throws with a clear message when a profile
    /// is unknown or the model does not fit on the device.
    public init(_ configuration: ServerConfiguration, profiles: ProfileStore) throws {
        accelerator = try profiles.accelerator(configuration.accelerator)
        if let name = configuration.modelProfile {
            model = try profiles.model(name)
        } else if let found = try profiles.model(matching: configuration.model) {
            model = found
        } else if let derived = try profiles.derivedModel(for: configuration.model) {
            model = derived.profile
            modelAssumption = derived.assumption
        } else {
            throw ProfileError("no model profile matches --model \(configuration.model), and its name states no known family and size (such as Qwen3-32B); name a profile with --model-profile (known: \(try profiles.modelNames().joined(separator: ", "))) or pass a local model directory")
        }
        tokenizer = try Self.loadTokenizer(configuration)
        switch configuration.dtype {
        case "float", "float32": model.dtypeBytes = 4
        case "half", "float16", "bfloat16": model.dtypeBytes = 2
        default: break
        }
        engine = try profiles.engine(configuration.engineProfile)
        if engine.scheduling == .v1, configuration.numSchedulerSteps > 1 {
            throw ProfileError("--num-scheduler-steps \(configuration.numSchedulerSteps) is a V0 engine setting (vLLM 0.6–0.10); the \(engine.name) engine schedules every step: drop it, or run --engine-profile vllm-v0")
        }
        costModel = CostModel(
            accelerator: accelerator, model: model, tensorParallel: configuration.tensorParallelSize,
            precision: try configuration.precision(), host: engine.host)
        var maxModelLen = configuration.maxModelLen ?? model.maxModelLen
        // V0's defaults (vLLM 0.6's EngineArgs): 256 sequences, and with chunked prefill off a
        // token budget of the whole context, at least 2048; V1's are per device.
        let maxNumSeqs = configuration.maxNumSeqs ?? (engine.scheduling == .v0 ? 256 : accelerator.defaultMaxNumSeqs)
        let loraReserve = configuration.enableLoRA ? configuration.maxLoras * model.loraAdapterBytes(rank: configuration.maxLoRARank) : 0
        let blocks = costModel.kvBlocks(
            gpuMemoryUtilization: configuration.gpuMemoryUtilization, blockSize: configuration.blockSize,
            loraReserveBytes: loraReserve)
        guard blocks >= 2 else {
            throw ProfileError("\(model.name) at TP \(configuration.tensorParallelSize) leaves no memory for the KV cache on \(accelerator.name); raise --tensor-parallel-size or --gpu-memory-utilization")
        }
        let neededForModelLen = (model.maxModelLen + configuration.blockSize - 1) / configuration.blockSize
        if configuration.maxModelLen == nil, let assumption = modelAssumption, neededForModelLen > blocks - 1 {
            // The architecture is a guess from the name, so the memory arithmetic is too: fit the
            // context to it, as `--max-model-len auto` would, rather than refuse on a guess.
            maxModelLen = ServerConfiguration.fitMaxModelLen
            modelAssumption = assumption + "; its max_model_len \(model.maxModelLen) does not fit the KV cache on \(accelerator.name) at TP \(configuration.tensorParallelSize), so it was fitted as --max-model-len auto does (vLLM would refuse to start; pass --max-model-len)"
        }
        if maxModelLen == ServerConfiguration.fitMaxModelLen {
            // vLLM's auto-fit: the model's own length, else what the cache holds (block 0 is the null block).
            maxModelLen = min(model.maxModelLen, (blocks - 1) * configuration.blockSize)
        }
        // vLLM refuses to start when one request of max_model_len cannot fit (kv_cache_utils.py).
        // Block 0 is vLLM's null block, so one fewer holds tokens.
        let neededBlocks = (maxModelLen + configuration.blockSize - 1) / configuration.blockSize
        if neededBlocks > blocks - 1 {
            let gib = 1024.0 * 1024 * 1024
            let blockBytes = costModel.kvBytesPerBlock(blockSize: configuration.blockSize)
            let needed = String(format: "%.2f", Double(neededBlocks) * blockBytes / gib)
            let available = String(format: "%.2f", Double(blocks) * blockBytes / gib)
            throw ProfileError("To serve at least one request with the models's max seq len (\(maxModelLen)), (\(needed) GiB KV cache is needed, which is larger than the available KV cache memory (\(available) GiB). Based on the available memory, the estimated maximum model length is \((blocks - 1) * configuration.blockSize). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.")
        }
        let maxNumBatchedTokens = configuration.maxNumBatchedTokens
            ?? engine.scheduling.defaultMaxNumBatchedTokens(maxModelLen: maxModelLen, deviceDefault: accelerator.defaultMaxNumBatchedTokens)
        if engine.scheduling == .v0, maxNumBatchedTokens < maxModelLen {
            // vLLM V0's SchedulerConfig check, chunked prefill being off.
            throw ProfileError("max_num_batched_tokens (\(maxNumBatchedTokens)) is smaller than max_model_len (\(maxModelLen)). This effectively limits the maximum sequence length to max_num_batched_tokens and makes vLLM reject longer sequences. Please increase max_num_batched_tokens or decrease max_model_len.")
        }
        engineConfig = EngineConfig(
            maxNumSeqs: maxNumSeqs, maxNumBatchedTokens: maxNumBatchedTokens, maxModelLen: maxModelLen,
            blockSize: configuration.blockSize, numGPUBlocks: blocks,
            enablePrefixCaching: configuration.enablePrefixCaching ?? engine.scheduling.prefixCachingByDefault,
            maxLoras: configuration.enableLoRA ? configuration.maxLoras : 0,
            maxCPULoras: configuration.enableLoRA ? (configuration.maxCPULoras ?? configuration.maxLoras) : 0,
            scheduling: engine.scheduling, numSchedulerSteps: configuration.numSchedulerSteps)
    }
}
