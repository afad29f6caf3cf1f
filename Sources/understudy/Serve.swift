import ArgumentParser
import FakeVLLM
import FleetManager
import Foundation
import InferenceAPI
import Logging

/// `understudy serve`: one emulated vLLM server, flags named and defaulted as `vllm serve`'s.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve an emulated vLLM OpenAI-compatible API.")

    @Argument(help: "The model to serve, as `vllm serve MODEL` (wins over --model).") var modelTag: String?
    @Option(help: "Model name or local directory, as vLLM's --model; picks the model profile.") var model = "meta-llama/Meta-Llama-3-8B"
    @Option(parsing: .upToNextOption, help: "Names clients use for the model (default: --model).") var servedModelName: [String] = []
    @Option(help: "Host to bind.") var host = "0.0.0.0"
    @Option(help: "Port to bind (0 picks a free one).") var port = 8000
    @Option(help: "Context length (default: the model's); `auto` or -1: the longest that fits, as vLLM's; 32k means 32000 and 32K 32768.")
    var maxModelLen: String?
    @Option(help: "Weight precision, as vLLM's --dtype: auto, half, float16, bfloat16, float or float32 (float32 doubles the weights' memory).")
    var dtype = "auto"
    @Option(help: "Most sequences in a batch (default: vLLM's for the device).") var maxNumSeqs: Int?
    @Option(help: "Token budget per step (default: vLLM's for the device).") var maxNumBatchedTokens: Int?
    @Option(help: "Tokens per KV block.") var blockSize = 16
    @Option(help: "Fraction of device memory vLLM may use.") var gpuMemoryUtilization = 0.9
    @Option(help: "Tensor-parallel degree (also -tp).") var tensorParallelSize = 1
    @Option(help: "Pipeline-parallel degree (also -pp); only 1 is emulated.") var pipelineParallelSize = 1
    @Option(help: "Data-parallel engines (also -dp); only 1 is emulated: run a fleet for more.") var dataParallelSize = 1
    @Option(name: [.customShort("q"), .long], help: "Weight quantization: fp8 (one byte per weight).") var quantization: String?
    @Option(help: "KV cache dtype: auto, fp8, fp8_e4m3 or fp8_e5m2.") var kvCacheDtype = "auto"
    @Flag(inversion: .prefixedNo, help: "Prefix caching (default: on with the V1 engine, off with V0's).") var enablePrefixCaching: Bool?
    @Option(help: "Decode passes per scheduler call, as vLLM V0's multi-step scheduling (needs --engine-profile vllm-v0).")
    var numSchedulerSteps = 1
    @Flag(help: "Serve LoRA adapters.") var enableLora = false
    @Option(help: "Distinct adapters per batch (GPU slots).") var maxLoras = 1
    @Option(help: "Adapters cached in host memory (default: --max-loras).") var maxCpuLoras: Int?
    @Option(help: "Largest adapter rank; sizes adapters and their reserved memory.") var maxLoraRank = 16
    @Option(parsing: .upToNextOption, help: "Adapters as name=path or JSON {\"name\",\"path\",\"base_model_name\"}; no file is read.")
    var loraModules: [String] = []
    @Option(help: "Require this bearer key on /v1 routes (also VLLM_API_KEY).") var apiKey: String?
    @Flag(help: "Let the model call tools on its own (tool_choice \"auto\"); needs --tool-call-parser.") var enableAutoToolChoice = false
    @Option(help: "How the model writes tool calls: \(ToolCallFormat.parserNames.joined(separator: ", ")).") var toolCallParser: String?
    @Option(help: "A Hugging Face tokenizer.json, or a directory with one, to count and write tokens with (default: a local --model directory's, else a built-in approximation).")
    var tokenizer: String?
    @OptionGroup var tls: TLSOptions
    @Option(help: "Random seed for outputs.") var seed: UInt64 = 0
    @Flag(help: "Report usage.prompt_tokens_details.cached_tokens.") var enablePromptTokensDetails = false
    @Flag(help: "Count in-flight requests on /load.") var enableServerLoadTracking = false
    @Option(help: "Accelerator profile (profiles/accelerators).") var accelerator = "h100-sxm"
    @Option(help: "Model profile, when --model names no known model.") var modelProfile: String?
    @Option(help: "Engine generation (profiles/engines): vllm-v1, or vllm-v0 for vLLM 0.5–0.10's V0 scheduler and its CPU time per step.")
    var engineProfile = ServerConfiguration.defaultEngineProfile
    @Option(help: "Emulated time runs this many times faster than real time.") var timeScale = 1.0
    @Option(help: "Seconds of emulated model loading before /health turns 200.") var startupDelay = 0.0
    @Option(help: "Also expose metrics deprecated after this vLLM version (e.g. 0.11).") var showHiddenMetricsForVersion: String?
    @Option(help: "Seconds an idle kept-alive connection stays open (uvicorn's --timeout-keep-alive; 0: forever).") var timeoutKeepAlive = 5.0
    @Option(help: "Seconds from a request's first byte to the end of its headers, else the connection is closed (0: no limit).")
    var requestHeadersTimeout = 10.0
    @Option(help: "Seconds from a request's headers to the end of its body, else 408 (0: no limit).") var requestBodyTimeout = 60.0
    @Option(help: "Most sequences (prompts × n) one request may ask for.") var maxRequestSequences = RequestBudget().maxSequences
    @Option(help: "Most output one request may ask for: n × max_tokens over its prompts, each token counted once more per top logprob.")
    var maxRequestOutputTokens = RequestBudget().maxOutputEntries
    @Flag(help: "No periodic engine stats line (vLLM's, every VLLM_LOG_STATS_INTERVAL seconds, 10 by default).") var disableLogStats = false
    @Flag(help: "No access line per request (uvicorn's).") var disableUvicornAccessLog = false
    @OptionGroup var logging: LogOptions
    @Flag(help: .hidden) var controlStdin = false
    /// vLLM flags taken out by `VLLMCommandLine.normalize` as changing nothing here.
    @Option(help: .hidden) var acceptedWithoutEffect: [String] = []

    func validate() throws {
        _ = try engineConfiguration()
        guard pipelineParallelSize == 1, dataParallelSize == 1 else {
            throw ValidationError("--pipeline-parallel-size and --data-parallel-size other than 1 are not emulated; use --tensor-parallel-size, or a fleet (understudy up) for several engines")
        }
        if enableAutoToolChoice, toolCallParser == nil {
            throw ValidationError("When --enable-auto-tool-choice is set, --tool-call-parser must be set too")
        }
        guard maxRequestSequences >= 1, maxRequestOutputTokens >= 1 else { throw ValidationError("request budgets must be at least 1") }
        _ = try connectionLimits()
    }

    /// The engine flags, applied through the table a fleet's `engineArgs` and process pods use:
    /// one parser and one check per flag.
    func engineConfiguration() throws -> ServerConfiguration {
        let flags: [(String, String?)] = [
            ("max-model-len", maxModelLen), ("max-num-seqs", maxNumSeqs.map(String.init)),
            ("max-num-batched-tokens", maxNumBatchedTokens.map(String.init)), ("block-size", "\(blockSize)"),
            ("gpu-memory-utilization", "\(gpuMemoryUtilization)"), ("quantization", quantization), ("kv-cache-dtype", kvCacheDtype),
            ("enable-prefix-caching", enablePrefixCaching.map { "\($0)" }), ("num-scheduler-steps", "\(numSchedulerSteps)"),
            ("engine-profile", engineProfile), ("max-loras", "\(maxLoras)"), ("max-cpu-loras", maxCpuLoras.map(String.init)),
            ("max-lora-rank", "\(maxLoraRank)"), ("seed", "\(seed)"), ("enable-prompt-tokens-details", "\(enablePromptTokensDetails)"),
            ("enable-server-load-tracking", "\(enableServerLoadTracking)"), ("time-scale", "\(timeScale)"), ("dtype", dtype),
            ("enable-auto-tool-choice", "\(enableAutoToolChoice)"), ("tool-call-parser", toolCallParser), ("tokenizer", tokenizer),
        ]
        var configuration = ServerConfiguration()
        for case let (name, value?) in flags {
            do {
                try PodFlags.apply(name, value, to: &configuration)
            } catch {
                throw ValidationError(error.description.hasPrefix("argument ") ? error.description : "--\(error)")
            }
        }
        // vLLM's --served-model-name takes several names (a fleet's pool, one).
        configuration.servedModelNames = servedModelName
        return configuration
    }

    func connectionLimits() throws -> ConnectionLimits {
        try ConnectionLimits.pod.overriding(
            idle: (timeoutKeepAlive, "--timeout-keep-alive"), requestHeaders: requestHeadersTimeout, requestBody: requestBodyTimeout)
    }

    func run() async throws {
        logging.bootstrap()
        var configuration = try engineConfiguration()
        if let modelTag, modelTag != model, CommandLine.arguments.contains(where: { $0 == "--model" || $0.hasPrefix("--model=") }) {
            print("understudy serve: WARNING: the positional model \(modelTag) wins over --model \(model), as in vllm serve")
        }
        configuration.model = modelTag ?? model
        configuration.host = host
        configuration.port = port
        configuration.tensorParallelSize = tensorParallelSize
        configuration.enableLoRA = enableLora
        configuration.loraModules = try loraModules.map(Self.parseLoRAModule)
        if !configuration.loraModules.isEmpty, !enableLora {
            // vLLM refuses adapters without --enable-lora; llm-d-inference-sim, whose arguments
            // GIE's manifests carry, serves them. Serving them is what such a deployment expects.
            configuration.enableLoRA = true
            print("understudy serve: WARNING: --lora-modules without --enable-lora: LoRA enabled, as llm-d-inference-sim does (vLLM would refuse to start)")
        }
        let environment = ProcessInfo.processInfo.environment
        configuration.apiKey = apiKey ?? environment["VLLM_API_KEY"]
        let runtimeLoRA = environment["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]?.trimmingCharacters(in: .whitespaces).lowercased()
        configuration.allowRuntimeLoRAUpdating = runtimeLoRA == "1" || runtimeLoRA == "true"
        configuration.accelerator = accelerator
        configuration.modelProfile = modelProfile
        configuration.startupDelay = startupDelay
        configuration.showHiddenMetricsForVersion = showHiddenMetricsForVersion
        configuration.connectionLimits = try connectionLimits()
        configuration.tls = try tls.serverTLS()
        if let maxN = environment["VLLM_MAX_N_SEQUENCES"] {
            guard let value = Int(maxN), value >= 1 else { throw ValidationError("VLLM_MAX_N_SEQUENCES must be a positive integer, got \(maxN)") }
            configuration.requestBudget.maxN = value
        }
        configuration.logStats = !disableLogStats
        configuration.accessLog = !disableUvicornAccessLog
        if let interval = environment["VLLM_LOG_STATS_INTERVAL"] {
            guard let seconds = Double(interval), seconds > 0, seconds.isFinite else {
                throw ValidationError("VLLM_LOG_STATS_INTERVAL must be a positive number of seconds, got \(interval)")
            }
            configuration.logStatsInterval = seconds
        }
        configuration.requestBudget.maxSequences = maxRequestSequences
        configuration.requestBudget.maxOutputEntries = maxRequestOutputTokens

        if !acceptedWithoutEffect.isEmpty {
            print("understudy serve: accepted with no effect on the emulation: \(acceptedWithoutEffect.joined(separator: ", "))")
        }
        let server = try await VLLMServer.start(
            configuration, profiles: ProfileStore.locate(),
            logging: ServerLogging(access: Logger(label: ServerLogHandler.accessLabel), engine: Logger(label: "loggers")))
        let setup = server.setup
        if let assumption = setup.modelAssumption { print("understudy serve: WARNING: \(assumption)") }
        print("understudy serve: \(configuration.primaryModelName) (\(setup.model.name)) on \(setup.accelerator.name) TP\(tensorParallelSize)")
        let steps = setup.engineConfig.numSchedulerSteps > 1 ? ", \(setup.engineConfig.numSchedulerSteps) scheduler steps" : ""
        print("  engine: \(setup.engine.name) (\(setup.engine.description)\(steps))")
        print("  KV cache: \(setup.engineConfig.numGPUBlocks) blocks of \(blockSize) tokens; max_num_seqs \(setup.engineConfig.maxNumSeqs), max_num_batched_tokens \(setup.engineConfig.maxNumBatchedTokens), max_model_len \(setup.engineConfig.maxModelLen)")
        if let model = setup.tokenizer as? HuggingFaceTokenizer {
            print("  tokenizer: the model's tokenizer.json, \(model.vocabularySize) tokens")
        }
        if configuration.allowRuntimeLoRAUpdating {
            print("  WARNING: LoRA dynamic loading & unloading is enabled in the API server. This should ONLY be used for local development!")
        }
        print("  listening on \(configuration.tls == nil ? "http" : "https")://\(host):\(server.port)")
        fflush(nil)  // print is buffered when stdout is not a terminal
        if controlStdin {
            Self.obeyControl(server, logLevel: logging.level)
            // Drained, or the fleet went away: `obeyControl` exits the process.
            while true { try await Task.sleep(for: .seconds(3600)) }
        }
        // uvicorn's lines on the way out.
        let lifecycle = Logger(label: "uvicorn.error")
        try await Draining.run(logger: lifecycle, untilClosed: { try await server.waitUntilClosed() }, drain: {
            lifecycle.info("Shutting down")
            do {
                try await server.beginDraining()
                while try await server.requestsInFlight() > 0 { try await Task.sleep(for: .milliseconds(20)) }
            } catch {
                lifecycle.error("draining failed: \(error)")
            }
            lifecycle.info("Application shutdown complete.")
            do {
                try await server.stop()
            } catch {
                lifecycle.error("stopping failed: \(error)")
            }
            lifecycle.info("Finished server process [\(getpid())]")
        })
    }

    /// A fleet's pod (`understudy up --processes`): takes `PodControl` lines from stdin on a
    /// thread of its own; exits when stdin closes (the fleet is gone) or once drained. A command
    /// that fails is logged to stderr: the fleet keeps only the health answers of this process's
    /// stdout, and shares its stderr.
    static func obeyControl(_ server: VLLMServer, logLevel: Logger.Level) {
        var logger = Logger(label: "control") { label in
            ServerLogHandler(label: label, level: logLevel) { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
        logger[metadataKey: "port"] = "\(server.port)"
        let thread = Thread { [logger] in
            while let line = readLine() {
                let command: PodControl
                do {
                    command = try PodControl(line: line)
                } catch {
                    FileHandle.standardError.write(Data("understudy serve: \(error)\n".utf8))
                    continue
                }
                let done = DispatchSemaphore(value: 0)
                Task {
                    defer { done.signal() }
                    switch command {
                    case .ready:
                        do {
                            try await server.markReady()
                        } catch {
                            logger.error("the model could not be made Ready: \(error)")
                        }
                    case .preload(let adapter):
                        do {
                            try await server.preload(adapters: [adapter])
                        } catch {
                            logger.warning("preloading adapter \(adapter) failed: \(error)")
                        }
                    case .health(let id):
                        // A hung server stays silent; the fleet's probe times out.
                        switch await server.checkHealth() {
                        case .status(let status): print("health \(id) \(status)")
                        case .refused: print("health \(id) 0")
                        case .silent: break
                        }
                        fflush(nil)
                    case .fault(let fault):
                        do {
                            try await server.apply(fault)
                        } catch {
                            logger.error("fault \(command.line) not applied: \(error)")
                        }
                    case .drain:
                        do {
                            try await server.beginDraining()
                        } catch {
                            logger.warning("draining failed: \(error)")
                        }
                        // The count fails only once the engine's event loop is gone (nothing is left
                        // to wait for); nothing cancels this task, so the sleep does not fail.
                        while (try? await server.requestsInFlight()) ?? 0 > 0 { try? await Task.sleep(for: .milliseconds(20)) }
                        // The last request counts as done when its final bytes are queued, not
                        // sent: a short linger lets a slow reader have them before the exit.
                        // Nothing cancels this task, so the sleep cannot fail.
                        try? await Task.sleep(for: .seconds(1))
                        Foundation.exit(0)
                    }
                }
                // Commands apply in order; a drain never returns.
                if case .drain = command { continue }
                done.wait()
            }
            Foundation.exit(0)
        }
        thread.start()
    }

    static func parseLoRAModule(_ text: String) throws -> LoRAModule {
        if text.hasPrefix("{") {
            let json: JSONValue
            do {
                json = try JSONValue.parse(text)
            } catch {
                // vLLM's argument parser words it so.
                throw ValidationError("Invalid JSON format for --lora-modules: \(text)")
            }
            // vLLM requires "path"; llm-d-inference-sim (GIE's sim deployment) does not: the name stands in.
            guard case .string(let name)? = json["name"], !name.isEmpty else {
                throw ValidationError("--lora-modules JSON needs \"name\" (and \"path\"): \(text)")
            }
            let path = json["path"]?.string ?? name
            var baseModel: String?
            if case .string(let base)? = json["base_model_name"] { baseModel = base }
            return LoRAModule(name: name, path: path, baseModelName: baseModel)
        }
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw ValidationError("--lora-modules expects name=path or JSON, got \(text)")
        }
        return LoRAModule(name: parts[0], path: parts[1])
    }
}
