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
    /// Chaos: every step takes this many times its modelled duration (tokens, metrics and the
    /// timeline all see the slower step).
    public var slowdown = 1.0

    // Requests live in a slab so the step loop mutates them in place, without hashing or
    // copy-on-write of their block tables; queues hold slot indices.
    // Not optionals: reading a field through `slots[i]!` copied the whole state (its arrays
    // retained and released) on every access; a vacant slot holds `RequestState.vacant`.
    private var slots: [RequestState] = []
    private var freeSlots: [Int] = []
    private var slotOfRequest: [RequestID: Int] = [:]
    private var waiting: Deque<Int> = []
    private var running: [Int] = []
    private var kv: KVCacheManager
    private var adapters: LoRAResidency
    /// The requests the last step scheduled and their tokens, kept for the next step's list.
    private var batch: [(slot: Int, tokens: Int)] = []
    /// Forward passes left in V0's current multi-step decode run after the last step.
    private var stepsLeftInRun = 0

    public init(config: EngineConfig, costModel: CostModel) {
        self.config = config
        self.costModel = costModel
        self.kv = KVCacheManager(numBlocks: config.numGPUBlocks, blockSize: config.blockSize, prefixCaching: config.enablePrefixCaching)
        self.adapters = LoRAResidency(gpuSlots: config.maxLoras, cpuSlots: config.maxCPULoras)
    }

    // MARK: State a driver and the metrics read

    public var numRunning: Int { running.count }
    public var numWaiting: Int { waiting.count }
    public var hasWork: Bool { !running.isEmpty || !waiting.isEmpty }
    /// `vllm:kv_cache_usage_perc`.
    public var kvCacheUsage: Double { kv.usage }
    /// Distinct adapters of running requests, in first-seen order.
    public var runningAdapters: [String] { adapterNames(running) }
    /// Distinct adapters of waiting requests, in first-seen order.
    public var waitingAdapters: [String] { adapterNames(waiting) }

    public func contains(_ id: RequestID) -> Bool { slotOfRequest[id] != nil }

    private func adapterNames(_ queue: some Sequence<Int>) -> [String] { distinctAdapters(queue).map(\.name) }

    private func distinctAdapters(_ queue: some Sequence<Int>) -> [LoRAAdapter] {
        var seen: [LoRAAdapter] = []
        for slot in queue {
            if let lora = slots[slot].request.lora, !seen.contains(lora) { seen.append(lora) }
        }
        return seen
    }

    // MARK: Input

    /// Queues a request. Its prompt plus output must fit `max_model_len`; the server checks that
    /// before, with vLLM's error message.
    public mutating func add(_ request: EngineRequest) {
        precondition(slotOfRequest[request.id] == nil, "duplicate request id \(request.id)")
        precondition(!request.plannedOutput.isEmpty, "a request emits at least one token")
        let slot: Int
        if let reused = freeSlots.popLast() {
            slot = reused
            slots[slot] = RequestState(request: request)
        } else {
            slot = slots.count
            slots.append(RequestState(request: request))
        }
        slotOfRequest[request.id] = slot
        waiting.append(slot)
    }

    /// Chaos: KV pressure leaves only `usable` (0…1) of the KV cache to requests; the rest is
    /// held, as if another process took the memory, until pressure is set back to 1. Running
    /// requests that no longer fit are preempted as vLLM preempts when blocks run out.
    public mutating func setKVPressure(usable fraction: Double) { kv.setPressure(usable: fraction) }

    /// Puts an adapter in the host cache, as vLLM's add_lora does for a runtime load.
    public mutating func cacheAdapter(_ name: String) { adapters.cache(name) }

    /// Removes a request (client gone, or a stop decided outside), freeing its blocks at once.
    public mutating func abort(_ id: RequestID, now: Double, reason: FinishReason = .abort) -> FinishedRequest? {
        guard let slot = slotOfRequest[id] else { return nil }
        if let index = running.firstIndex(of: slot) {
            running.remove(at: index)
        } else if let index = waiting.firstIndex(of: slot) {
            waiting.remove(at: index)
        }
        return release(slot, reason: reason, at: now)
    }

    // MARK: Stepping

    /// Runs one iteration starting at `now`, or returns nil when there is nothing to run.
    public mutating func step(now: Double) -> StepOutcome? {
        guard hasWork else { return nil }
        // The last step's list, emptied: a step allocates none of its own.
        var scheduled = batch
        batch = []
        scheduled.removeAll(keepingCapacity: true)
        var round = Round(budget: config.maxNumBatchedTokens)
        switch config.scheduling {
        case .v1:
            // Running requests first; waiting ones after, unless this step had to preempt.
            continueRunning(into: &scheduled, &round)
            if round.preemptions == 0 { admitWaiting(into: &scheduled, &round, now: now) }
        case .v0 where stepsLeftInRun > 0 && !running.isEmpty:
            // Inside a multi-step run: the same decodes again (their blocks were reserved when
            // it was scheduled), nothing admitted, nothing preempted.
            stepsLeftInRun -= 1
            continueRunning(into: &scheduled, &round)
        case .v0:
            // Waiting prompts first (V0 counts the running requests' adapters against
            // max_loras then too); the running requests' decodes only if none was admitted,
            // with slots for the whole multi-step run.
            round.loraLimit = distinctAdapters(running)
            admitWaiting(into: &scheduled, &round, now: now)
            if scheduled.isEmpty {
                round.loraLimit = []
                continueRunning(into: &scheduled, &round, lookahead: config.numSchedulerSteps - 1)
                if !scheduled.isEmpty { stepsLeftInRun = config.numSchedulerSteps - 1 }
            }
        }
        if scheduled.isEmpty { stepsLeftInRun = 0 }
        let preemptions = round.preemptions, queries = round.queries, hits = round.hits
        let batchAdapters = round.batchAdapters

        // Cost of the batch.
        var shape = BatchShape()
        for (slot, tokens) in scheduled {
            let computed = slots[slot].numComputedTokens, total = slots[slot].numTokens
            shape.sequences += 1
            if computed + tokens >= total { shape.sampledSequences += 1 }
            if computed + tokens == total, tokens == 1, slots[slot].numOutputTokens > 0 {
                shape.decodeSequences += 1
                shape.decodeContextTokens += computed
            } else {
                shape.prefillTokens += tokens
                shape.prefillAttentionWork += Double(tokens) * (Double(computed) + Double(tokens) / 2)
            }
        }
        if !batchAdapters.isEmpty {
            shape.adapterBytes = batchAdapters.reduce(0) { $0 + $1.bytes }
            for load in adapters.activate(batchAdapters) {
                shape.adapterLoadSeconds += costModel.adapterLoadSeconds(bytes: load.adapter.bytes, fromStorage: load.fromStorage)
            }
        }
        let duration = costModel.stepSeconds(shape) * slowdown
        let end = now + duration

        // Apply: advance computed tokens, cache full blocks, emit tokens, finish.
        var outcome = StepOutcome(
            start: now, duration: duration, scheduledTokens: shape.tokens, promptTokensCompleted: 0,
            generatedTokens: 0, preemptions: preemptions, prefixCacheQueries: queries, prefixCacheHits: hits,
            progress: [])
        outcome.progress.reserveCapacity(scheduled.count + round.ignored.count)
        for slot in round.ignored {
            outcome.progress.append(RequestProgress(
                id: slots[slot].request.id, newTokens: 0..<0, cachedPromptTokens: 0, arrival: slots[slot].request.arrival,
                previousTokenTime: nil, finishReason: .length))
            outcome.finished.append(release(slot, reason: .length, at: end))
        }
        var finishedSlots: [Int] = []
        for (slot, tokens) in scheduled {
            slots[slot].numComputedTokens += tokens
            guard slots[slot].numComputedTokens >= slots[slot].numTokens else { continue }
            var progress = Self.emitToken(&slots[slot], at: end, outcome: &outcome)
            // Field by field: copying the whole state would retain its arrays, every token.
            if slots[slot].numOutputTokens == slots[slot].plannedCount {
                progress.finishReason = slots[slot].request.finishReason
            } else if slots[slot].numTokens >= config.maxModelLen {
                progress.finishReason = .length
            }
            if let reason = progress.finishReason {
                outcome.finished.append(release(slot, reason: reason, at: end))
                finishedSlots.append(slot)
            }
            outcome.progress.append(progress)
        }
        // Not `slots[$0] == nil`: that copies each running request's state to compare it.
        if !finishedSlots.isEmpty { running.removeAll { finishedSlots.contains($0) } }
        batch = scheduled
        return outcome
    }

    /// What a step's scheduling gathered besides its batch.
    private struct Round {
        /// Tokens the step may still schedule.
        var budget: Int
        var preemptions = 0
        var queries = 0, hits = 0
        /// The distinct adapters of the batch, for its cost.
        var batchAdapters: [LoRAAdapter] = []
        /// Adapters counted against max_loras besides the batch's (V0: the running requests').
        var loraLimit: [LoRAAdapter] = []
        /// Waiting requests V0 gave up on: they could never fit the KV cache.
        var ignored: [Int] = []

        mutating func add(_ lora: LoRAAdapter?) {
            guard let lora, !batchAdapters.contains(lora) else { return }
            batchAdapters.append(lora)
        }

        /// Whether one more adapter would exceed max_loras.
        func refuses(_ lora: LoRAAdapter?, maxLoras: Int) -> Bool {
            guard let lora, !batchAdapters.contains(lora), !loraLimit.contains(lora) else { return false }
            return batchAdapters.count + loraLimit.count(where: { !batchAdapters.contains($0) }) >= maxLoras
        }
    }

    /// Running requests, in order: one decode token each, or the next chunk of a partial
    /// prefill; the newest is preempted while blocks run out. `lookahead`: slots for as many
    /// more tokens are reserved too (V0's multi-step run).
    private mutating func continueRunning(into scheduled: inout [(slot: Int, tokens: Int)], _ round: inout Round, lookahead: Int = 0) {
        var index = 0
        while index < running.count, round.budget > 0 {
            let slot = running[index]
            let tokens = min(slots[slot].numTokens - slots[slot].numComputedTokens, longPrefillCap, round.budget)
            var selfPreempted = false
            while !kv.allocate(&slots[slot], newTokens: tokens, lookahead: lookahead) {
                let victim = running.removeLast()
                round.preemptions += 1
                preempt(victim)
                if victim == slot {
                    selfPreempted = true
                    break
                }
            }
            if selfPreempted { break }
            scheduled.append((slot, tokens))
            round.budget -= tokens
            round.add(slots[slot].request.lora)
            index += 1
        }
    }

    /// Waiting requests, first come first served, while the budget, max_num_seqs and the KV
    /// cache allow: chunked under V1; whole under V0, where a prompt that does not fit stops
    /// admission (and its block manager keeps a watermark of blocks free).
    private mutating func admitWaiting(into scheduled: inout [(slot: Int, tokens: Int)], _ round: inout Round, now: Double) {
        var skipped: [Int] = []
        let reserve = config.admissionWatermarkBlocks
        admission: while let slot = waiting.first, round.budget > 0, running.count < config.maxNumSeqs {
            if config.scheduling == .v0 {
                // V0 asks its block manager before max_loras (scheduler.py's _schedule_prefills):
                // a prompt that could never fit with the watermark kept is finished unanswered
                // (FINISHED_IGNORED, reported as "length"), and one that does not fit now stops
                // admission. The whole sequence counts, cached blocks or not (can_allocate).
                switch kv.admission(slots[slot], reserve: reserve) {
                case .never:
                    waiting.removeFirst()
                    round.ignored.append(slot)
                    continue
                case .later:
                    break admission
                case .now:
                    break
                }
            }
            if round.refuses(slots[slot].request.lora, maxLoras: config.maxLoras) {
                // Another adapter would exceed max_loras: it waits, the rest may go ahead.
                waiting.removeFirst()
                skipped.append(slot)
                continue
            }
            var cachedHits: [BlockPool.BlockID] = []
            var recomputed = 0
            if slots[slot].numComputedTokens == 0, config.enablePrefixCaching {
                // vLLM counts every lookup, also one whose allocation then fails.
                (cachedHits, recomputed) = kv.cachedPrefix(&slots[slot])
                round.queries += slots[slot].numTokens
                round.hits += cachedHits.count * config.blockSize
            }
            let computed = cachedHits.count * config.blockSize
            let remaining = slots[slot].numTokens - computed
            let tokens: Int
            switch config.scheduling {
            case .v1:
                tokens = min(remaining, round.budget, longPrefillCap)
            case .v0:
                // A prompt longer than the whole budget is a configuration V0 refuses
                // (max_num_batched_tokens below max_model_len): chunked rather than left to wait forever.
                guard remaining <= round.budget || (scheduled.isEmpty && remaining > config.maxNumBatchedTokens) else { break admission }
                tokens = min(remaining, round.budget)
            }
            guard kv.allocate(&slots[slot], newTokens: tokens, cachedHits: cachedHits, reserve: reserve) else { break }
            waiting.removeFirst()
            if slots[slot].times.firstScheduled == nil {
                slots[slot].times.firstScheduled = now
                slots[slot].cachedPromptTokens = min(computed, slots[slot].promptCount)
                slots[slot].recomputedPromptTokens = recomputed
            }
            running.append(slot)
            scheduled.append((slot, tokens))
            round.budget -= tokens
            round.add(slots[slot].request.lora)
        }
        for slot in skipped.reversed() { waiting.prepend(slot) }
    }

    // MARK: Helpers

    private var longPrefillCap: Int {
        config.longPrefillTokenThreshold > 0 ? config.longPrefillTokenThreshold : Int.max
    }

    /// The request sampled a token at `end`. Static, so calling it with a slot of `self` as the
    /// inout argument does not copy the engine (and with it the slot array).
    private static func emitToken(_ state: inout RequestState, at end: Double, outcome: inout StepOutcome) -> RequestProgress {
        let tokenIndex = state.numOutputTokens
        state.numOutputTokens += 1
        let previous = state.times.lastToken
        if state.times.firstToken == nil {
            state.times.firstToken = end
            outcome.promptTokensCompleted += state.promptCount
        }
        state.times.lastToken = end
        outcome.generatedTokens += 1
        return RequestProgress(
            id: state.request.id, newTokens: tokenIndex..<(tokenIndex + 1), cachedPromptTokens: state.cachedPromptTokens ?? 0,
            arrival: state.request.arrival, previousTokenTime: previous, finishReason: nil)
    }

    /// Recompute preemption: the request loses its blocks and goes back to the head of the queue.
    private mutating func preempt(_ slot: Int) {
        kv.free(&slots[slot])
        slots[slot].numComputedTokens = 0
        waiting.prepend(slot)
    }

    /// Frees a finished or aborted request's blocks and slot; the caller removes it from its queue.
    private mutating func release(_ slot: Int, reason: FinishReason, at time: Double) -> FinishedRequest {
        kv.free(&slots[slot])
        let state = slots[slot]
        slots[slot] = .vacant
        freeSlots.append(slot)
        slotOfRequest[state.request.id] = nil
        return state.finished(reason: reason, at: time)
    }
}

/// The engine's book-keeping for one request.
struct RequestState: Sendable {
    let request: EngineRequest
    /// The request's prompt and planned output lengths, kept here: every step reads them for
    /// every running request, and reaching them through the arrays missed the cache.
    let promptCount: Int
    let plannedCount: Int
    var numComputedTokens = 0
    var numOutputTokens = 0
    var blockTable: [BlockPool.BlockID] = []
    var blockHashes: [UInt64] = []
    var numRegisteredBlocks = 0
    var cachedPromptTokens: Int?
    var recomputedPromptTokens = 0
    var times: RequestTimes

    init(request: EngineRequest) {
        self.request = request
        promptCount = request.promptTokens.count
        plannedCount = request.plannedOutput.count
        self.times = RequestTimes(arrival: request.arrival)
    }

    /// What a free slot holds: nothing of the request that left it.
    static let vacant = RequestState(request: EngineRequest(id: .max, promptTokens: [], plannedOutput: [0], finishReason: .abort, arrival: 0))

    var numTokens: Int { promptCount + numOutputTokens }

    /// Calls `body` with the tokens at these positions, prompt then output, in order.
    func forEachToken(in positions: Range<Int>, _ body: (Int) -> Void) {
        for token in request.promptTokens[positions.clamped(to: 0..<promptCount)] { body(token) }
        guard positions.upperBound > promptCount else { return }
        for token in request.plannedOutput[(max(positions.lowerBound, promptCount) - promptCount)..<(positions.upperBound - promptCount)] { body(token) }
    }

    func finished(reason: FinishReason, at time: Double) -> FinishedRequest {
        FinishedRequest(
            id: request.id, reason: reason, times: times, finishTime: time,
            promptTokens: promptCount, generatedTokens: numOutputTokens,
            cachedPromptTokens: cachedPromptTokens ?? 0, recomputedPromptTokens: recomputedPromptTokens,
            maxTokensParam: request.maxTokensParam)
    }
}
