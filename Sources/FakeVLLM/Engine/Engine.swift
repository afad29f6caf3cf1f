import DequeModule

/// The emulated vLLM V1 engine core: a deterministic state machine with no clock and no I/O.
///
/// A driver adds requests, then calls `step(now:)` whenever the engine has work; each step
/// schedules a batch as vLLM's V1 scheduler does (running requests first, then waiting ones
/// FCFS with chunked prefill inside `max_num_batched_tokens`, at most `max_num_seqs` running,
/// at most `max_loras` distinct adapters), allocates KV blocks with prefix caching, preempts the
/// newest running request when blocks run out, and returns how long the step takes on the
/// profiled accelerator and what each request got. Tokens become visible at the step's end.
public struct Engine: Sendable {
    public let config: EngineConfig
    public let costModel: CostModel

    private var requests: [RequestID: RequestState] = [:]
    private var waiting: Deque<RequestID> = []
    private var running: [RequestID] = []
    private var blocks: BlockPool
    private var adapters: LoRAResidency

    public init(config: EngineConfig, costModel: CostModel) {
        self.config = config
        self.costModel = costModel
        self.blocks = BlockPool(numBlocks: config.numGPUBlocks)
        self.adapters = LoRAResidency(gpuSlots: config.maxLoras, cpuSlots: config.maxCPULoras)
    }

    // MARK: State a driver and the metrics read

    public var numRunning: Int { running.count }
    public var numWaiting: Int { waiting.count }
    public var hasWork: Bool { !running.isEmpty || !waiting.isEmpty }
    /// `vllm:kv_cache_usage_perc`.
    public var kvCacheUsage: Double { blocks.usage }
    /// Distinct adapters of running requests, in first-seen order.
    public var runningAdapters: [String] { adapterNames(running) }
    /// Distinct adapters of waiting requests, in first-seen order.
    public var waitingAdapters: [String] { adapterNames(waiting) }

    public func contains(_ id: RequestID) -> Bool { requests[id] != nil }

    private func adapterNames(_ ids: some Sequence<RequestID>) -> [String] {
        var seen: [String] = []
        for id in ids {
            if let name = requests[id]?.request.lora?.name, !seen.contains(name) { seen.append(name) }
        }
        return seen
    }

    // MARK: Input

    /// Queues a request. Its prompt plus output must fit `max_model_len`; the server checks that
    /// before, with vLLM's error message.
    public mutating func add(_ request: EngineRequest) {
        precondition(requests[request.id] == nil, "duplicate request id \(request.id)")
        precondition(!request.plannedOutput.isEmpty, "a request emits at least one token")
        requests[request.id] = RequestState(request: request)
        waiting.append(request.id)
    }

    /// Registers an adapter as present in host memory (preloaded or loaded at runtime).
    public mutating func cacheAdapter(_ name: String) { adapters.cache(name) }

    /// Forgets an adapter that was unloaded.
    public mutating func removeAdapter(_ name: String) { adapters.remove(name) }

    /// Removes a request (client gone, or a stop decided outside), freeing its blocks at once.
    public mutating func abort(_ id: RequestID, now: Double, reason: FinishReason = .abort) -> FinishedRequest? {
        guard let state = requests.removeValue(forKey: id) else { return nil }
        if let index = running.firstIndex(of: id) {
            running.remove(at: index)
        } else if let index = waiting.firstIndex(of: id) {
            waiting.remove(at: index)
        }
        blocks.release(state.blockTable.reversed())
        return state.finished(reason: reason, at: now)
    }

    /// Drops every cached prefix (vLLM's `/reset_prefix_cache`).
    public mutating func resetPrefixCache() { blocks.resetPrefixCache() }

    // MARK: Stepping

    /// Runs one iteration starting at `now`, or returns nil when there is nothing to run.
    public mutating func step(now: Double) -> StepOutcome? {
        guard hasWork else { return nil }
        var budget = config.maxNumBatchedTokens
        var scheduled: [(id: RequestID, tokens: Int)] = []
        scheduled.reserveCapacity(running.count + 8)
        var preemptions = 0
        var queries = 0, hits = 0
        var batchAdapters: [LoRAAdapter] = []

        // 1. Running requests: one decode token each, or the next chunk of a partial prefill.
        var index = 0
        while index < running.count, budget > 0 {
            let id = running[index]
            var state = requests[id]!
            let tokens = min(newTokens(for: state), budget)
            var selfPreempted = false
            while !allocate(&state, newTokens: tokens, cachedHits: []) {
                let victim = running.removeLast()
                preemptions += 1
                if victim == id {
                    requests[id] = state
                    preempt(id)
                    selfPreempted = true
                    break
                }
                preempt(victim)
            }
            if selfPreempted { break }
            requests[id] = state
            scheduled.append((id, tokens))
            budget -= tokens
            if let lora = state.request.lora, !batchAdapters.contains(lora) { batchAdapters.append(lora) }
            index += 1
        }

        // 2. Waiting requests, FCFS, unless this step had to preempt.
        if preemptions == 0 {
            var skipped: [RequestID] = []
            while let id = waiting.first, budget > 0, running.count < config.maxNumSeqs {
                var state = requests[id]!
                if let lora = state.request.lora, !batchAdapters.contains(lora), batchAdapters.count >= config.maxLoras {
                    // Another adapter would exceed max_loras: it waits, the rest may go ahead.
                    waiting.removeFirst()
                    skipped.append(id)
                    continue
                }
                var cachedHits: [BlockPool.BlockID] = []
                if state.numComputedTokens == 0 && config.enablePrefixCaching {
                    cachedHits = cachedPrefix(&state)
                }
                let computed = cachedHits.count * config.blockSize
                let tokens = min(state.numTokens - computed, budget, longPrefillCap)
                guard allocate(&state, newTokens: tokens, cachedHits: cachedHits) else { break }
                waiting.removeFirst()
                if config.enablePrefixCaching, state.times.firstScheduled == nil {
                    queries += state.numTokens
                    hits += computed
                }
                if state.cachedPromptTokens == nil { state.cachedPromptTokens = min(computed, state.request.promptTokens.count) }
                if state.times.firstScheduled == nil { state.times.firstScheduled = now }
                requests[id] = state
                running.append(id)
                scheduled.append((id, tokens))
                budget -= tokens
                if let lora = state.request.lora, !batchAdapters.contains(lora) { batchAdapters.append(lora) }
            }
            for id in skipped.reversed() { waiting.prepend(id) }
        }

        // 3. Cost of the batch.
        var shape = BatchShape()
        for (id, tokens) in scheduled {
            let state = requests[id]!
            let willSample = state.numComputedTokens + tokens >= state.numTokens
            if willSample { shape.sampledSequences += 1 }
            if state.numComputedTokens + tokens == state.numTokens, tokens == 1, state.numOutputTokens > 0 {
                shape.decodeSequences += 1
                shape.decodeContextTokens += state.numComputedTokens
            } else {
                shape.prefillTokens += tokens
                shape.prefillAttentionWork += Double(tokens) * (Double(state.numComputedTokens) + Double(tokens) / 2)
            }
        }
        if !batchAdapters.isEmpty {
            shape.adapterBytes = batchAdapters.reduce(0) { $0 + $1.bytes }
            for adapter in adapters.activate(batchAdapters) {
                shape.adapterLoadSeconds += costModel.adapterLoadSeconds(bytes: adapter.bytes)
            }
        }
        let duration = costModel.stepSeconds(shape)
        let end = now + duration

        // 4. Apply: advance computed tokens, cache full blocks, emit tokens, finish.
        var outcome = StepOutcome(
            start: now, duration: duration, scheduledTokens: shape.tokens, promptTokensCompleted: 0,
            generatedTokens: 0, preemptions: preemptions, prefixCacheQueries: queries, prefixCacheHits: hits,
            progress: [])
        outcome.progress.reserveCapacity(scheduled.count)
        var finishedIDs: [RequestID] = []
        for (id, tokens) in scheduled {
            var state = requests[id]!
            state.numComputedTokens += tokens
            if config.enablePrefixCaching { registerFullBlocks(&state) }
            guard state.numComputedTokens >= state.numTokens else {
                requests[id] = state
                continue
            }
            let tokenIndex = state.numOutputTokens
            state.numOutputTokens += 1
            let previous = state.times.lastToken
            if state.times.firstToken == nil {
                state.times.firstToken = end
                outcome.promptTokensCompleted += state.request.promptTokens.count
            }
            state.times.lastToken = end
            outcome.generatedTokens += 1
            var progress = RequestProgress(
                id: id, newTokens: tokenIndex..<(tokenIndex + 1), cachedPromptTokens: state.cachedPromptTokens ?? 0,
                arrival: state.request.arrival, previousTokenTime: previous, finished: nil)
            if state.numOutputTokens == state.request.plannedOutput.count {
                progress.finished = state.finished(reason: state.request.finishReason, at: end)
            } else if state.numTokens >= config.maxModelLen {
                progress.finished = state.finished(reason: .length, at: end)
            }
            if progress.finished != nil {
                finishedIDs.append(id)
                blocks.release(state.blockTable.reversed())
                requests[id] = nil
            } else {
                requests[id] = state
            }
            outcome.progress.append(progress)
        }
        if !finishedIDs.isEmpty {
            let done = Set(finishedIDs)
            running.removeAll { done.contains($0) }
        }
        return outcome
    }

    // MARK: Scheduling helpers

    private var longPrefillCap: Int {
        config.longPrefillTokenThreshold > 0 ? config.longPrefillTokenThreshold : Int.max
    }

    private func newTokens(for state: RequestState) -> Int {
        min(state.numTokens - state.numComputedTokens, longPrefillCap)
    }

    /// The longest run of cached full blocks at the start of the request's tokens, keeping at
    /// least one token to compute (vLLM recomputes the last one to get logits).
    private func cachedPrefix(_ state: inout RequestState) -> [BlockPool.BlockID] {
        extendHashes(&state)
        let maxBlocks = (state.numTokens - 1) / config.blockSize
        var hits: [BlockPool.BlockID] = []
        for blockIndex in 0..<min(maxBlocks, state.blockHashes.count) {
            guard let block = blocks.cachedBlock(for: state.blockHashes[blockIndex]) else { break }
            hits.append(block)
        }
        return hits
    }

    /// Gives the request blocks for `newTokens` more tokens (after any cached hits); false when
    /// the pool cannot, leaving everything as it was.
    private mutating func allocate(_ state: inout RequestState, newTokens: Int, cachedHits: [BlockPool.BlockID]) -> Bool {
        let computed = state.numComputedTokens + cachedHits.count * config.blockSize
        let neededBlocks = (computed + newTokens + config.blockSize - 1) / config.blockSize
        let fresh = max(0, neededBlocks - state.blockTable.count - cachedHits.count)
        let revived = cachedHits.reduce(0) { $0 + (blocks.isFree($1) ? 1 : 0) }
        guard fresh + revived <= blocks.numFree else { return false }
        for block in cachedHits { blocks.touch(block) }
        state.blockTable.append(contentsOf: cachedHits)
        state.numComputedTokens = computed
        state.numRegisteredBlocks = max(state.numRegisteredBlocks, cachedHits.count)
        blocks.allocate(fresh, into: &state.blockTable)
        return true
    }

    /// Recompute preemption: the request loses its blocks and goes back to the head of the queue.
    private mutating func preempt(_ id: RequestID) {
        guard var state = requests[id] else { return }
        blocks.release(state.blockTable.reversed())
        state.blockTable.removeAll(keepingCapacity: true)
        state.numComputedTokens = 0
        state.numRegisteredBlocks = 0
        requests[id] = state
        waiting.prepend(id)
    }

    private func extendHashes(_ state: inout RequestState) {
        let fullBlocks = state.numTokens / config.blockSize
        while state.blockHashes.count < fullBlocks {
            let index = state.blockHashes.count
            let parent = state.blockHashes.last ?? 0
            var hasher = BlockHasher(parent: parent)
            for position in (index * config.blockSize)..<((index + 1) * config.blockSize) {
                hasher.combine(state.token(at: position))
            }
            state.blockHashes.append(hasher.finalize(adapter: state.request.lora?.name))
        }
    }

    private mutating func registerFullBlocks(_ state: inout RequestState) {
        let computedBlocks = min(state.numComputedTokens / config.blockSize, state.blockTable.count)
        guard computedBlocks > state.numRegisteredBlocks else { return }
        extendHashes(&state)
        for index in state.numRegisteredBlocks..<min(computedBlocks, state.blockHashes.count) {
            blocks.register(state.blockTable[index], hash: state.blockHashes[index])
        }
        state.numRegisteredBlocks = computedBlocks
    }
}

/// The engine's book-keeping for one request.
struct RequestState: Sendable {
    let request: EngineRequest
    var numComputedTokens = 0
    var numOutputTokens = 0
    var blockTable: [BlockPool.BlockID] = []
    var blockHashes: [UInt64] = []
    var numRegisteredBlocks = 0
    var cachedPromptTokens: Int?
    var times: RequestTimes

    init(request: EngineRequest) {
        self.request = request
        self.times = RequestTimes(arrival: request.arrival)
    }

    var numTokens: Int { request.promptTokens.count + numOutputTokens }

    func token(at index: Int) -> Int {
        let promptCount = request.promptTokens.count
        return index < promptCount ? request.promptTokens[index] : request.plannedOutput[index - promptCount]
    }

    func finished(reason: FinishReason, at time: Double) -> FinishedRequest {
        FinishedRequest(
            id: request.id, reason: reason, times: times, finishTime: time,
            promptTokens: request.promptTokens.count, generatedTokens: numOutputTokens,
            cachedPromptTokens: cachedPromptTokens ?? 0, maxTokensParam: request.maxTokensParam)
    }
}
