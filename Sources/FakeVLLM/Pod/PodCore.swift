import InferenceAPI

/// One emulated vLLM pod with no clock and no sockets: its engine, its adapters, vLLM's
/// admission rules, its faults as data and its in-flight bookkeeping. A driver gives it time:
/// the live server (`EngineDriver`, on an event loop's timers) and the simulator (virtual time)
/// call the same methods, so no rule of a pod's is written twice.
public struct PodCore: Sendable {
    public let configuration: ServerConfiguration
    public let setup: EngineSetup
    public private(set) var engine: Engine
    /// Adapters by name, in load order (`--lora-modules`, then runtime loads).
    public private(set) var adapters: [RegisteredAdapter] = []
    public private(set) var faults = PodFaults()
    /// The emulated model load has finished: /health is 200 and requests are served.
    public private(set) var ready: Bool
    /// Shutting down: /health fails and new requests are refused; those in flight go on.
    public private(set) var draining = false
    /// Generation requests accepted, by the model name they asked for (an adapter or the base
    /// model): what vLLM's request log would show.
    public private(set) var acceptedRequests: [String: Int] = [:]
    /// API requests being answered (vLLM's `server_load`, on /load).
    public var inFlight = 0

    /// Engine steps taken so far (the step a delivery belongs to, for logs and tests).
    public private(set) var stepsTaken = 0
    /// Where the emulated timeline is: when the last step ends, and when the last request came.
    public private(set) var lastStepEnd = 0.0
    private var lastSubmit = 0.0
    private var nextRequestID: RequestID = 1
    /// Seeds outputs without a request seed: --seed and arrival order decide them.
    private var outputSeeds: SplitMix64
    private var faultDraws = SplitMix64(seed: 0xFA17)

    public init(configuration: ServerConfiguration, setup: EngineSetup) {
        self.configuration = configuration
        self.setup = setup
        engine = Engine(config: setup.engineConfig, costModel: setup.costModel)
        outputSeeds = SplitMix64(seed: configuration.seed)
        ready = configuration.startupDelay <= 0
        let bytes = setup.model.loraAdapterBytes(rank: configuration.maxLoRARank)
        for module in configuration.loraModules {
            // Like vLLM, --lora-modules only registers names; the first request loads the adapter.
            adapters.append(RegisteredAdapter(
                name: module.name, path: module.path, parent: module.baseModelName ?? configuration.primaryModelName,
                adapter: LoRAAdapter(name: module.name, bytes: bytes)))
        }
    }

    /// vLLM's default `--max-logprobs`.
    public static let maxLogprobs = 20

    /// Names the base model answers to: --served-model-name replaces --model, as in vLLM.
    public var baseModelNames: [String] {
        configuration.servedModelNames.isEmpty ? [configuration.model] : configuration.servedModelNames
    }

    // MARK: Lifecycle

    /// Ends the emulated model load.
    public mutating func markReady() { ready = true }

    public mutating func beginDraining() {
        draining = true
        ready = false
    }

    /// Why a generation or model request is refused before it is read, if it is.
    public var unavailability: APIError? {
        if draining { return APIError(status: 503, type: "ServiceUnavailableError", message: "The server is shutting down.", param: nil) }
        if !ready { return APIError(status: 503, type: "ServiceUnavailableError", message: "The model is still loading.", param: nil) }
        return nil
    }

    // MARK: Faults

    public mutating func apply(_ fault: PodFault) {
        switch fault {
        case .hang(let hung): faults.hung = hung
        case .slow(let factor):
            faults.slowdown = factor
            engine.slowdown = factor
        case .errors(let injection): faults.injection = injection
        case .partition(let partitioned): faults.partitioned = partitioned
        case .kvPressure(let usable):
            faults.kvUsable = usable
            engine.setKVPressure(usable: usable)
        case .restore:
            for lift in [PodFault.hang(false), .slow(1), .errors(nil), .partition(false), .kvPressure(usable: 1)] { apply(lift) }
        }
    }

    /// The injected fault this accepted request meets, if any (a seeded draw per request).
    public mutating func drawInjectedFault() -> FaultInjection.Kind? {
        guard let injection = faults.injection, faultDraws.nextUnit() < injection.rate else { return nil }
        return injection.kind
    }

    // MARK: Admission, in vLLM 0.11.0's order

    /// The adapter a `model` names, nil for the base model; vLLM's 404 for anything else.
    public func resolveModel(_ model: String?) throws(APIError) -> LoRAAdapter? {
        guard let model, !model.isEmpty else { return nil }
        if baseModelNames.contains(model) { return nil }
        if let entry = adapters.first(where: { $0.name == model }) { return entry.adapter }
        throw APIError.notFound("The model `\(model)` does not exist.")
    }

    /// A prompt given as token ids, as the tokenizer would have started it from text (BOS).
    public func withSpecialTokens(_ ids: [Int]) -> [Int] {
        guard let bos = setup.tokenizer.bosID else { return ids }
        return [bos] + ids
    }

    /// vLLM 0.11.0's context-length checks; returns the effective max_tokens (the request's,
    /// or the rest of the context when it gave none).
    public func checkLength(promptTokens: Int, maxTokens: Int?, kind: RequestKind) throws(APIError) -> Int {
        let maxModelLen = setup.engineConfig.maxModelLen
        switch kind {
        case .completion:
            // The renderer allows max_model_len − (max_tokens or 0) prompt tokens and says so.
            // Python's integers do not overflow: a max_tokens below −(Int.max − max_model_len)
            // leaves a limit no prompt reaches, and the sampling check refuses it next.
            let (limit, overflow) = maxModelLen.subtractingReportingOverflow(maxTokens ?? 0)
            if !overflow, promptTokens > limit {
                throw APIError.badRequest("This model's maximum context length is \(limit) tokens. However, your request has \(promptTokens) input tokens. Please reduce the length of the input messages.")
            }
        case .chat:
            if promptTokens >= maxModelLen {
                throw APIError.badRequest("This model's maximum context length is \(maxModelLen) tokens. However, your request has \(promptTokens) input tokens. Please reduce the length of the input messages. None")
            }
            if let requested = maxTokens, requested > maxModelLen - promptTokens {
                throw APIError.badRequest("'max_tokens' or 'max_completion_tokens' is too large: \(requested). This model's maximum context length is \(maxModelLen) tokens and your request has \(promptTokens) input tokens (\(requested) > \(maxModelLen) - \(promptTokens)). None")
            }
        }
        return min(maxTokens ?? Int.max, maxModelLen - promptTokens)
    }

    /// The checks a simulated completion (one prompt as token ids, max_tokens set) meets on its
    /// way in, in the server's order: refused while unavailable, the model, then the context
    /// length. Returns the prompt as the engine gets it (with BOS) and the adapter.
    public func admitCompletion(model: String?, promptTokenIDs: [Int], maxTokens: Int) throws(APIError) -> (prompt: [Int], lora: LoRAAdapter?) {
        if let refusal = unavailability { throw refusal }
        let lora = try resolveModel(model)
        let prompt = withSpecialTokens(promptTokenIDs)
        _ = try checkLength(promptTokens: prompt.count, maxTokens: maxTokens, kind: .completion)
        return (prompt, lora)
    }

    /// What the API server checks before a request reaches the engine: the model (404), LoRA,
    /// media and tool flags, every prompt's length, then the sampling parameters (vLLM renders
    /// all prompts before it builds any SamplingParams), then Understudy's own budget.
    /// `outputCap` is the Responses API's max_output_tokens, which caps where chat refuses.
    func admit(_ request: GenerationRequest, outputCap: Int? = nil) throws(APIError) -> Admission {
        let lora = try resolveModel(request.model)
        if lora != nil, setup.engineConfig.maxLoras == 0 {
            throw APIError.badRequest("LoRA is not enabled. Use --enable-lora to enable LoRA.")
        }
        if request.hasMedia {
            // Every emulated model is text-only. vLLM 0.11.0's multimodal registry refuses
            // before fetching anything, naming --model, and the chat server appends the
            // error's cause (None).
            throw APIError.badRequest("\(configuration.model) is not a multimodal model None")
        }
        if request.toolMode == .auto, !configuration.enableAutoToolChoice {
            throw APIError.badRequest(#""auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set"#)
        }
        var admission = Admission(lora: lora)
        for prompt in request.prompts {
            let tokens: [Int]
            switch prompt {
            case .text(let text): tokens = setup.tokenizer.encode(text, addSpecialTokens: true)
            case .tokens(let ids): tokens = ids
            }
            admission.prompts.append(tokens)
            var maxTokens = try checkLength(promptTokens: tokens.count, maxTokens: request.maxTokens, kind: request.kind)
            if let outputCap { maxTokens = min(outputCap, maxTokens) }
            admission.maxTokens.append(maxTokens)
        }
        for maxTokens in admission.maxTokens { try request.validateSampling(maxTokens: maxTokens, maxN: configuration.requestBudget.maxN) }
        try checkBudget(request, admission)
        return admission
    }

    /// What vLLM's engine front end refuses after the request was accepted (so a stream
    /// carries it): too many logprobs, then token ids outside the vocabulary.
    func engineRejection(_ request: GenerationRequest, _ admission: Admission) -> APIError? {
        if let count = request.logprobs, (count == -1 ? setup.model.vocab : count) > Self.maxLogprobs {
            return APIError.badRequest("Requested sample logprobs of \(count == -1 ? setup.model.vocab : count), which is greater than max allowed: \(Self.maxLogprobs)")
        }
        for tokens in admission.prompts {
            if let highest = tokens.max(), highest > setup.model.vocab - 1 {
                return APIError.badRequest("Token id \(highest) is out of vocabulary")
            }
        }
        return nil
    }

    /// Understudy's own bound on one request's work, so that no request can stall or exhaust
    /// the process every in-process pod shares (a GPU server would queue it). Counted before
    /// anything is allocated, without overflow: the sequences (prompts × n), and the entries its
    /// output could hold (each sequence's max_tokens, and its prompt again with `echo`, times
    /// 1 + its top logprobs).
    private func checkBudget(_ request: GenerationRequest, _ admission: Admission) throws(APIError) {
        let budget = configuration.requestBudget
        let (sequences, sequencesOverflow) = admission.maxTokens.count.multipliedReportingOverflow(by: request.n)
        guard !sequencesOverflow, sequences <= budget.maxSequences else {
            throw APIError.badRequest(
                "This request asks for \(request.n) completions of \(admission.maxTokens.count) prompt(s); this server's limit is \(budget.maxSequences) sequences per request.",
                param: "n")
        }
        let perToken = 1 + min(max(request.logprobs ?? 0, 0), Self.maxLogprobs)
        var entries = 0
        for (maxTokens, prompt) in zip(admission.maxTokens, admission.prompts) {
            // Both are below max_model_len here, so their sum cannot overflow.
            let (perSequence, overflow1) = (maxTokens + (request.echo ? prompt.count : 0)).multipliedReportingOverflow(by: request.n)
            let (weighted, overflow2) = perSequence.multipliedReportingOverflow(by: perToken)
            let (sum, overflow3) = entries.addingReportingOverflow(weighted)
            guard !overflow1, !overflow2, !overflow3, sum <= budget.maxOutputEntries else {
                throw APIError.badRequest(
                    "This request could generate more than \(budget.maxOutputEntries) tokens (n × max_tokens over its prompts, with each prompt again when echoing, each token counted once more per top logprob); this server's limit per request is \(budget.maxOutputEntries). Lower max_tokens or n.",
                    param: "max_tokens")
            }
            entries = sum
        }
        // Every generated token is checked against every stop string.
        let (checks, overflow) = entries.multipliedReportingOverflow(by: request.stop.count)
        guard !overflow, checks <= budget.maxStopChecks else {
            throw APIError.badRequest(
                "This request's \(request.stop.count) stop strings would be checked after each of up to \(entries) tokens; this server's limit is \(budget.maxStopChecks) checks per request. Send fewer stop strings or lower max_tokens or n.",
                param: "stop")
        }
    }

    /// Counts an accepted request under the model name it asked for.
    public mutating func recordAccepted(model: String?) {
        acceptedRequests[model ?? configuration.primaryModelName, default: 0] += 1
    }

    /// Each sequence's output, decided up front: a request seed makes it repeat exactly; greedy
    /// decoding depends on the prompt and model alone (the same on any pod); otherwise --seed
    /// and arrival order decide. `constraint` is the structured output or tool call it writes.
    mutating func planSequences(
        _ request: GenerationRequest, _ admission: Admission, constraint: OutputConstraint?, now: Double
    ) -> [PlannedSequence] {
        let tokenizer = setup.tokenizer
        let stopTokenIDs = Set(request.stopTokenIDs)
        let stopStrings = StopStrings(request.stop)
        var planned: [PlannedSequence] = []
        for (promptIndex, tokens) in admission.prompts.enumerated() {
            for _ in 0..<request.n {
                // seed -1 means "no seed", as in vLLM.
                let seed = request.seed.flatMap { $0 == -1 ? nil : UInt64(bitPattern: Int64($0)) &+ UInt64(planned.count) }
                let greedySeed = request.isGreedy ? Self.greedySeed(prompt: tokens, model: admission.lora?.name ?? setup.model.huggingFaceID) : nil
                var generator = SplitMix64(seed: greedySeed ?? seed ?? outputSeeds.next())
                let output = constraint?.draw(using: &generator)
                let plan = OutputPlan(
                    limits: .init(maxTokens: admission.maxTokens[promptIndex], minTokens: request.minTokens, ignoreEOS: request.ignoreEOS,
                                  stop: stopStrings, stopTokenIDs: stopTokenIDs,
                                  includeStopStringInOutput: request.includeStopStringInOutput),
                    lengthDistribution: setup.model.outputLength, generator: &generator, tokenizer: tokenizer,
                    script: output.map { tokenizer.encode($0.text, addSpecialTokens: false) })
                let sequence = EngineRequest(
                    id: makeRequestID(), promptTokens: tokens, plannedOutput: plan.tokens, finishReason: plan.finishReason,
                    lora: admission.lora, arrival: now, maxTokensParam: admission.maxTokens[promptIndex])
                planned.append(PlannedSequence(request: sequence, plan: plan, promptIndex: promptIndex, output: output))
            }
        }
        return planned
    }

    /// The seed of greedy output: a hash of the prompt's token ids under the model's name.
    static func greedySeed(prompt: [Int], model: String) -> UInt64 {
        prompt.withUnsafeBytes { XXHash64.hash($0, seed: XXHash64.hash(Array(model.utf8))) }
    }

    public mutating func makeRequestID() -> RequestID {
        defer { nextRequestID += 1 }
        return nextRequestID
    }

    // MARK: Adapters

    /// Loads registered adapters into the host cache now, as a runtime load would, so their
    /// first request does not read them from storage. Unknown names are ignored.
    public mutating func preload(_ names: [String]) {
        for name in names where adapters.contains(where: { $0.name == name }) { engine.cacheAdapter(name) }
    }

    /// `POST /v1/load_lora_adapter`; returns vLLM's text answer.
    public mutating func loadAdapter(name: String, path: String) throws(APIError) -> String {
        guard !name.isEmpty, !path.isEmpty else {
            throw APIError(status: 400, type: "InvalidUserInput", message: "Both 'lora_name' and 'lora_path' must be provided.")
        }
        guard !adapters.contains(where: { $0.name == name }) else {
            throw APIError(status: 400, type: "InvalidUserInput", message: "The lora adapter '\(name)' has already been loaded.")
        }
        guard setup.engineConfig.maxLoras > 0 else {
            throw APIError.badRequest("Call to add_lora method failed: LoRA is not enabled. Use --enable-lora to enable LoRA.")
        }
        let adapter = LoRAAdapter(name: name, bytes: setup.model.loraAdapterBytes(rank: configuration.maxLoRARank))
        adapters.append(RegisteredAdapter(name: name, path: path, parent: configuration.primaryModelName, adapter: adapter))
        engine.cacheAdapter(name)
        return "Success: LoRA adapter '\(name)' added successfully."
    }

    /// `POST /v1/unload_lora_adapter`; returns vLLM's text answer.
    public mutating func unloadAdapter(name: String) throws(APIError) -> String {
        guard !name.isEmpty else {
            throw APIError(status: 400, type: "InvalidUserInput", message: "'lora_name' needs to be provided to unload a LoRA adapter.")
        }
        guard let index = adapters.firstIndex(where: { $0.name == name }) else {
            throw APIError(status: 404, type: "NotFoundError", message: "The lora adapter '\(name)' cannot be found.")
        }
        // vLLM 0.11 only forgets the name; the engine keeps the weights until they are evicted.
        adapters.remove(at: index)
        return "Success: LoRA adapter '\(name)' removed successfully."
    }

    // MARK: Stepping

    /// An idle engine starts its first step this long (emulated seconds) after the request
    /// that woke it, so requests that arrive together are batched together.
    public static let arrivalWindow = 20e-6

    /// A sequence reaches the engine at `now` (emulated seconds).
    public mutating func submit(_ request: EngineRequest, now: Double) {
        engine.add(request)
        lastSubmit = now
    }

    /// Ends a sequence whose client went away; its blocks are freed at once.
    public mutating func abort(_ id: RequestID, now: Double) -> FinishedRequest? {
        engine.abort(id, now: max(now, lastStepEnd))
    }

    /// When the next step starts: on schedule, where the last one ended (never before the
    /// newest request it may run arrived); from idle, now (never before the last step ended).
    public func stepStart(now: Double, continuing: Bool) -> Double {
        continuing ? max(lastStepEnd, lastSubmit) : max(now, lastStepEnd)
    }

    /// Runs the engine's next step from `start`, or nil when there is nothing to run or the pod
    /// is hung (a stopped process takes no step). Its tokens become visible at its end.
    public mutating func step(at start: Double) -> StepOutcome? {
        guard !faults.hung, let outcome = engine.step(now: start) else { return nil }
        stepsTaken += 1
        lastStepEnd = outcome.end
        return outcome
    }

    /// Whether to step again at once: a step that scheduled and preempted nothing would repeat
    /// until a request arrives or one leaves, so the pod idles instead.
    public func continuesStepping(after outcome: StepOutcome) -> Bool {
        (outcome.scheduledTokens > 0 || outcome.preemptions > 0) && engine.hasWork && !faults.hung
    }

    /// Whether an idle pod should start stepping (new work, a fault lifted).
    public var canStep: Bool { engine.hasWork && !faults.hung }
}

/// What admission decided for a generation request.
public struct Admission: Sendable {
    /// The adapter the request named, nil for the base model.
    public var lora: LoRAAdapter?
    /// Each prompt's token ids.
    public var prompts: [[Int]] = []
    /// Each prompt's effective max_tokens.
    public var maxTokens: [Int] = []
}

/// One engine sequence of an accepted request, with the output planned for it.
struct PlannedSequence {
    var request: EngineRequest
    var plan: OutputPlan
    var promptIndex: Int
    /// The structured output or tool call the text spells, if constrained.
    var output: ConstrainedOutput?
}

/// An adapter the pod answers to.
public struct RegisteredAdapter: Sendable {
    public var name: String
    public var path: String
    /// The base model it was trained on (the model card's `parent`).
    public var parent: String
    public var adapter: LoRAAdapter
}

/// A pod's faults, as data (chaos).
public struct PodFaults: Sendable, Equatable {
    /// Requests are read and left unanswered, and no step is taken (SIGSTOP).
    public var hung = false
    /// Every engine step takes this many times its emulated duration.
    public var slowdown = 1.0
    /// A share of generation requests fails.
    public var injection: FaultInjection?
    /// Connections to the pod are reset (its engine keeps its state).
    public var partitioned = false
    /// The share of the KV cache left to requests.
    public var kvUsable = 1.0

    public var isEmpty: Bool { self == PodFaults() }
}

/// A fault put on a pod, or lifted.
public enum PodFault: Sendable, Equatable {
    case hang(Bool)
    case slow(Double)
    case errors(FaultInjection?)
    case partition(Bool)
    case kvPressure(usable: Double)
    /// Lifts them all.
    case restore
}
