@testable import FakeVLLM
import Testing

/// A small engine on an H100-shaped cost model, built without reading profile files.
func makeEngine(
    maxNumSeqs: Int = 8, maxNumBatchedTokens: Int = 256, blocks: Int = 200, prefixCaching: Bool = true,
    maxLoras: Int = 0, maxCPULoras: Int? = nil, scheduling: EngineConfig.Scheduling = .v1, schedulerSteps: Int = 1
) -> Engine {
    let accelerator = AcceleratorProfile(
        name: "test", description: "test", instant: nil, memoryMiB: 81559, memoryBandwidthTBps: 3.35, bf16TFLOPs: 989.4,
        efficiency: .init(memory: 0.7, compute: 0.65, kvRead: 0.78, attention: 0.5), stepOverheadMs: 2,
        allReduceLatencyUs: 15, allReduceBandwidthGBps: 450, hostToDeviceGBps: 45, adapterDiskReadGBps: 2,
        loraLoadOverheadMs: 10,
        memoryReserveGiB: 1.5, tensorParallelReserveGiB: 14, defaultMaxNumSeqs: 1024, defaultMaxNumBatchedTokens: 8192)
    let model = ModelProfile(
        name: "llama-3-8b", huggingFaceID: "meta-llama/Meta-Llama-3-8B", aliases: nil, layers: 32, hidden: 4096,
        heads: 32, kvHeads: 8, headDim: 128, intermediate: 14336, vocab: 128256, maxModelLen: 8192, dtypeBytes: 2,
        outputLength: .init(median: 100, sigma: 1))
    let config = EngineConfig(
        maxNumSeqs: maxNumSeqs, maxNumBatchedTokens: maxNumBatchedTokens, maxModelLen: 8192, numGPUBlocks: blocks,
        enablePrefixCaching: prefixCaching, maxLoras: maxLoras, maxCPULoras: maxCPULoras ?? maxLoras, scheduling: scheduling,
        numSchedulerSteps: schedulerSteps)
    return Engine(config: config, costModel: CostModel(accelerator: accelerator, model: model))
}

func request(_ id: RequestID, prompt: [Int], output: Int, lora: String? = nil, at time: Double = 0) -> EngineRequest {
    EngineRequest(
        id: id, promptTokens: prompt, plannedOutput: Array(repeating: 42, count: output), finishReason: .length,
        lora: lora.map { LoRAAdapter(name: $0, bytes: 84_000_000) }, arrival: time, maxTokensParam: output)
}

/// Steps until idle; returns the finished requests in order.
@discardableResult
func drain(_ engine: inout Engine, from start: Double = 0, limit: Int = 100_000) -> [FinishedRequest] {
    var now = start
    var finished: [FinishedRequest] = []
    for _ in 0..<limit {
        guard let outcome = engine.step(now: now) else { break }
        now = outcome.end
        finished += outcome.finished
    }
    return finished
}

@Suite struct EngineTests {
    @Test func batchesContinuouslyAndQueuesPastMaxNumSeqs() throws {
        var engine = makeEngine(maxNumSeqs: 4)
        for id in 0..<6 { engine.add(request(RequestID(id), prompt: Array(id * 100..<id * 100 + 20), output: 5)) }
        let firstStep = engine.step(now: 0)
        let first = try #require(firstStep)
        #expect(engine.numRunning == 4)
        #expect(engine.numWaiting == 2)
        #expect(first.progress.count == 4)  // every admitted prompt fit and produced its first token
        #expect(first.duration > 0.002)
        let finished = drain(&engine, from: first.end)
        #expect(finished.count == 6)
        #expect(finished.allSatisfy { $0.generatedTokens == 5 && $0.reason == .length })
        #expect(!engine.hasWork)
        #expect(engine.kvCacheUsage == 0)  // vLLM's null block is not counted
    }

    @Test func chunksLongPromptsWithinTheTokenBudget() throws {
        var engine = makeEngine(maxNumBatchedTokens: 64)
        engine.add(request(1, prompt: Array(0..<150), output: 2))
        var steps = 0
        var firstTokenStep: Int?
        var now = 0.0
        while let outcome = engine.step(now: now) {
            steps += 1
            #expect(outcome.scheduledTokens <= 64)
            if firstTokenStep == nil, !outcome.progress.isEmpty { firstTokenStep = steps }
            now = outcome.end
        }
        #expect(firstTokenStep == 3)  // 64 + 64 + 22 prompt tokens
        #expect(steps == 4)
    }

    @Test func sharedPrefixHitsTheCacheAfterTheFirstRequestFinishes() throws {
        var engine = makeEngine()
        let prefix = Array(0..<64)
        engine.add(request(1, prompt: prefix + [1000, 1001], output: 3))
        drain(&engine)
        engine.add(request(2, prompt: prefix + [2000], output: 3))
        let outcomeStep = engine.step(now: 10)
        let outcome = try #require(outcomeStep)
        #expect(outcome.prefixCacheHits == 64)
        #expect(outcome.prefixCacheQueries == 65)
        #expect(outcome.scheduledTokens == 1)
        #expect(outcome.progress.first?.cachedPromptTokens == 64)
    }

    @Test func identicalPromptsInOneStepShareBlocks() throws {
        // vLLM registers blocks when it allocates them, so the second of two identical prompts
        // scheduled together already hits the first one's blocks.
        var engine = makeEngine()
        let prompt = Array(0..<66)
        engine.add(request(1, prompt: prompt, output: 3))
        engine.add(request(2, prompt: prompt, output: 3))
        let outcomeStep = engine.step(now: 0)
        let outcome = try #require(outcomeStep)
        #expect(outcome.prefixCacheQueries == 132)
        #expect(outcome.prefixCacheHits == 64)
        #expect(outcome.progress.map(\.cachedPromptTokens) == [0, 64])
    }

    @Test func aFullyCachedPromptRecomputesItsLastBlock() throws {
        var engine = makeEngine()
        engine.add(request(1, prompt: Array(0..<64), output: 1))
        drain(&engine)
        engine.add(request(2, prompt: Array(0..<64), output: 1))
        let finished = drain(&engine, from: 1)
        #expect(finished.first?.cachedPromptTokens == 48)
        #expect(finished.first?.recomputedPromptTokens == 16)
    }

    @Test func noHitsWithPrefixCachingOff() throws {
        var engine = makeEngine(prefixCaching: false)
        engine.add(request(1, prompt: Array(0..<64), output: 1))
        drain(&engine)
        engine.add(request(2, prompt: Array(0..<64), output: 1))
        let outcomeStep = engine.step(now: 1)
        let outcome = try #require(outcomeStep)
        #expect(outcome.prefixCacheHits == 0)
        #expect(outcome.scheduledTokens == 64)
    }

    @Test func preemptsTheNewestRequestWhenBlocksRunOut() {
        // 9 usable blocks of 16 tokens; two requests that each grow to 5 blocks cannot both fit.
        var engine = makeEngine(blocks: 10)
        engine.add(request(1, prompt: Array(0..<32), output: 40))
        engine.add(request(2, prompt: Array(100..<132), output: 40))
        var now = 0.0
        var preemptions = 0
        var finished: [FinishedRequest] = []
        while let outcome = engine.step(now: now) {
            preemptions += outcome.preemptions
            finished += outcome.finished
            now = outcome.end
        }
        #expect(preemptions >= 1)
        #expect(finished.map(\.id) == [1, 2])
        #expect(finished.allSatisfy { $0.generatedTokens == 40 })
    }

    @Test func kvUsageGrowsWithContext() throws {
        var engine = makeEngine(blocks: 1000)
        engine.add(request(1, prompt: Array(0..<16), output: 200))
        _ = engine.step(now: 0)
        let early = engine.kvCacheUsage
        var now = 1.0
        for _ in 0..<100 { now = engine.step(now: now)!.end }
        #expect(engine.kvCacheUsage > early)
    }

    @Test func adaptersBeyondMaxLorasWait() throws {
        var engine = makeEngine(maxLoras: 1)
        engine.add(request(1, prompt: Array(0..<16), output: 10, lora: "a"))
        engine.add(request(2, prompt: Array(100..<116), output: 10, lora: "b"))
        engine.add(request(3, prompt: Array(200..<216), output: 10))
        let firstStep = engine.step(now: 0)
        let first = try #require(firstStep)
        #expect(engine.runningAdapters == ["a"])
        #expect(engine.waitingAdapters == ["b"])
        #expect(Set(first.progress.map(\.id)) == [1, 3])  // the base-model request goes ahead
        // Loading "a" into its GPU slot costs at least the fixed load overhead.
        #expect(first.duration > 0.010)
        let finished = drain(&engine, from: first.end)
        #expect(finished.last?.id == 2)
    }

    /// Swapping an adapter back into its GPU slot is cheaper while it is still in the host
    /// cache (--max-cpu-loras) than after it fell out and must be read from storage again.
    @Test func hostCacheMakesReloadsCheaper() throws {
        func firstStepDuration(_ engine: inout Engine, _ adapter: String, id: RequestID) -> Double {
            engine.add(request(id, prompt: Array(Int(id) * 100..<Int(id) * 100 + 16), output: 1, lora: adapter))
            let outcome = engine.step(now: 0)!
            drain(&engine)
            return outcome.duration
        }
        var engine = makeEngine(maxLoras: 1, maxCPULoras: 2)
        let cold = firstStepDuration(&engine, "a", id: 1)   // from storage
        _ = firstStepDuration(&engine, "b", id: 2)           // evicts a from the GPU slot
        let warm = firstStepDuration(&engine, "a", id: 3)   // a is still in the host cache
        _ = firstStepDuration(&engine, "b", id: 4)
        _ = firstStepDuration(&engine, "c", id: 5)           // host cache holds b, c: a falls out
        let coldAgain = firstStepDuration(&engine, "a", id: 6)
        let resident = firstStepDuration(&engine, "a", id: 7) // already in the slot
        #expect(warm < cold)
        #expect(abs(coldAgain - cold) < 1e-9)
        #expect(resident < warm)
    }

    /// A preloaded adapter (the fleet's `preload: true`, a runtime load) sits in the host cache:
    /// its first request is cheaper than one that reads the adapter from storage.
    @Test func aCachedAdapterIsCheaperOnItsFirstRequest() throws {
        var cold = makeEngine(maxLoras: 1)
        cold.add(request(1, prompt: Array(0..<16), output: 1, lora: "a"))
        var preloaded = makeEngine(maxLoras: 1)
        preloaded.cacheAdapter("a")
        preloaded.add(request(1, prompt: Array(0..<16), output: 1, lora: "a"))
        let coldStep = cold.step(now: 0)
        let warmStep = preloaded.step(now: 0)
        #expect(try #require(warmStep).duration < #require(coldStep).duration)
    }

    /// Chaos KV pressure: the held share shows in the usage at once, a running request that no
    /// longer fits is preempted, and lifting the pressure lets it finish.
    @Test func kvPressureHoldsBlocksAndPreemptsWhatNoLongerFits() throws {
        var engine = makeEngine(blocks: 100)
        engine.add(request(1, prompt: Array(0..<320), output: 400))
        let first = engine.step(now: 0)
        var now = try #require(first).end
        let before = engine.kvCacheUsage
        engine.setKVPressure(usable: 0.25)
        #expect(engine.kvCacheUsage >= 0.75 + before - 0.02)
        var preemptions = 0
        for _ in 0..<300 {
            guard let outcome = engine.step(now: now) else { break }
            preemptions += outcome.preemptions
            now = outcome.end
        }
        #expect(preemptions > 0, "the request outgrew the quarter left to it")
        #expect(engine.numWaiting == 1)
        engine.setKVPressure(usable: 1)
        let finished = drain(&engine, from: now)
        #expect(finished.map(\.id) == [1])
        #expect(engine.kvCacheUsage == 0)
    }

    @Test func abortFreesBlocksAtOnce() throws {
        var engine = makeEngine(blocks: 100)
        engine.add(request(1, prompt: Array(0..<160), output: 100))
        _ = engine.step(now: 0)
        #expect(engine.kvCacheUsage > 0.1)
        let aborted = engine.abort(1, now: 0.5)
        let finished = try #require(aborted)
        #expect(finished.reason == .abort)
        #expect(engine.kvCacheUsage == 0)
        let after = engine.step(now: 1)
        #expect(after == nil)
    }

    @Test func predictionMatchesTheLatencyTestShape() {
        // vLLM's nightly latency test: batch 8, input 32, output 128 — one prefill step then
        // 127 decode steps, about 8.4 ms each on an H100 for Llama-3-8B (timing/MODEL.md §4.2).
        let engine = makeEngine(maxNumSeqs: 256, maxNumBatchedTokens: 8192, blocks: 1000)
        let prediction = Prediction.run(engineConfig: engine.config, costModel: engine.costModel, batch: 8, input: 32, output: 128)
        #expect(abs(prediction.interTokenLatency - 0.00844) < 0.0005)
        #expect(abs(prediction.endToEndLatency - (prediction.timeToFirstToken + 127 * prediction.interTokenLatency)) < 1e-6)
    }
}

/// vLLM V0's scheduler (`_schedule_default`, chunked prefill off): prompts first and whole, a
/// step all prefill or all decode.
@Suite struct V0SchedulingTests {
    /// Two requests decoding, then a third arrives.
    static func decodingPair(_ scheduling: EngineConfig.Scheduling) throws -> (Engine, Double) {
        var engine = makeEngine(maxNumBatchedTokens: 512, scheduling: scheduling)
        engine.add(request(0, prompt: Array(0..<40), output: 50))
        engine.add(request(1, prompt: Array(100..<140), output: 50))
        var now = 0.0
        for _ in 0..<3 {
            let outcome = engine.step(now: now)
            now = try #require(outcome).end
        }
        engine.add(request(2, prompt: Array(200..<300), output: 5, at: now))
        return (engine, now)
    }

    @Test func aNewPromptStallsTheDecodesForAStepUnderV0AndJoinsThemUnderV1() throws {
        var (v0, now0) = try Self.decodingPair(.v0)
        let prefillStep = v0.step(now: now0)
        let prefill = try #require(prefillStep)
        // Only the new prompt: 100 tokens, its first token out, the two decodes waiting.
        #expect(prefill.scheduledTokens == 100 && prefill.progress.map(\.id) == [2])
        let decodeStep = v0.step(now: prefill.end)
        let decode = try #require(decodeStep)
        #expect(decode.scheduledTokens == 3 && Set(decode.progress.map(\.id)) == [0, 1, 2])

        var (v1, now1) = try Self.decodingPair(.v1)
        let mixedStep = v1.step(now: now1)
        let mixed = try #require(mixedStep)
        #expect(mixed.scheduledTokens == 102 && Set(mixed.progress.map(\.id)) == [0, 1, 2])
    }

    @Test func aPromptThatDoesNotFitTheBudgetHoldsBackThoseBehindItUnderV0() throws {
        // 300 + 300 tokens in a 512-token budget: V0 takes the first whole and stops; V1 chunks
        // the second into what is left.
        for (scheduling, expected) in [(EngineConfig.Scheduling.v0, [300]), (.v1, [300, 212])] {
            var engine = makeEngine(maxNumBatchedTokens: 512, blocks: 400, scheduling: scheduling)
            engine.add(request(0, prompt: Array(0..<300), output: 4))
            engine.add(request(1, prompt: Array(1000..<1300), output: 4))
            engine.add(request(2, prompt: Array(2000..<2010), output: 4))
            let first = engine.step(now: 0)
            let step = try #require(first)
            #expect(step.scheduledTokens == expected.reduce(0, +), "\(scheduling)")
            #expect(engine.numRunning == expected.count, "\(scheduling)")
            #expect(drain(&engine, from: step.end).count == 3, "\(scheduling)")
        }
    }

    @Test func v0AdmitsAPromptOnlyIfAWatermarkOfBlocksStaysFree() throws {
        // 300 blocks (one is vLLM's null block, 299 free): V0 keeps 3 free. With 40 blocks
        // taken by a running request, a prompt of 257 blocks fits V1 but would leave V0 2: it
        // waits until they are freed.
        for scheduling in [EngineConfig.Scheduling.v0, .v1] {
            var engine = makeEngine(maxNumBatchedTokens: 8192, blocks: 300, scheduling: scheduling)
            engine.add(request(0, prompt: Array(0..<(40 * 16 - 1)), output: 3))
            let first = engine.step(now: 0)
            engine.add(request(1, prompt: Array(10_000..<(10_000 + 257 * 16)), output: 2))
            let second = engine.step(now: try #require(first).end)
            #expect(try #require(second).scheduledTokens == (scheduling == .v0 ? 1 : 1 + 257 * 16), "\(scheduling)")
            #expect(drain(&engine, from: second!.end).map(\.generatedTokens) == [3, 2], "\(scheduling)")
        }
        // One that could never fit with the watermark (297 of 299 blocks) is finished unanswered
        // under V0, as vLLM's FINISHED_IGNORED, reported as "length".
        var engine = makeEngine(maxNumBatchedTokens: 8192, blocks: 300, scheduling: .v0)
        engine.add(request(0, prompt: Array(0..<(297 * 16)), output: 2))
        let ignored = engine.step(now: 0)
        #expect(ignored?.finished.map(\.reason) == [.length] && ignored?.finished.first?.generatedTokens == 0)
        #expect(ignored?.progress.map(\.finishReason) == [.length] && !engine.hasWork)
    }

    @Test func v0AsksForBlocksBeforeMaxLoras() throws {
        // max_loras 1, adapter a running on 40 of 299 blocks. At the head of the queue, an
        // adapter-b prompt of 257 blocks: it would exceed max_loras, and it does not fit now
        // with V0's 3-block watermark. vLLM V0 asks the block manager first, so admission stops
        // there and the adapter-a prompt behind it waits too; V1 skips b for its adapter and
        // admits a.
        for scheduling in [EngineConfig.Scheduling.v0, .v1] {
            var engine = makeEngine(maxNumBatchedTokens: 8192, blocks: 300, maxLoras: 1, scheduling: scheduling)
            engine.add(request(0, prompt: Array(0..<(40 * 16 - 1)), output: 3, lora: "a"))
            let firstStep = engine.step(now: 0)
            let first = try #require(firstStep)
            engine.add(request(1, prompt: Array(10_000..<(10_000 + 257 * 16)), output: 2, lora: "b"))
            engine.add(request(2, prompt: Array(20_000..<20_016), output: 2, lora: "a"))
            let secondStep = engine.step(now: first.end)
            let second = try #require(secondStep)
            let admitted = Set(second.progress.map(\.id)).subtracting([0])
            #expect(admitted == (scheduling == .v0 ? [] : [2]), "\(scheduling): \(second.progress.map(\.id))")
            #expect(drain(&engine, from: second.end).count == 3, "\(scheduling)")
        }
        // One that can never fit is ignored at once, whatever its adapter.
        var engine = makeEngine(maxNumBatchedTokens: 8192, blocks: 300, maxLoras: 1, scheduling: .v0)
        engine.add(request(0, prompt: Array(0..<16), output: 50, lora: "a"))
        let firstStep = engine.step(now: 0)
        let first = try #require(firstStep)
        engine.add(request(1, prompt: Array(0..<(297 * 16)), output: 2, lora: "b"))
        let secondStep = engine.step(now: first.end)
        let second = try #require(secondStep)
        #expect(second.finished.map(\.id) == [1] && second.finished.first?.reason == .length)
    }

    @Test func aMultiStepRunKeepsItsBatchUntilItEnds() throws {
        // --num-scheduler-steps 4: once two decodes are scheduled, four passes run before a
        // newcomer is admitted (V1 would admit it at once).
        var engine = makeEngine(maxNumBatchedTokens: 512, scheduling: .v0, schedulerSteps: 4)
        engine.add(request(0, prompt: Array(0..<40), output: 30))
        engine.add(request(1, prompt: Array(100..<140), output: 30))
        let prefillStep = engine.step(now: 0)
        let prefill = try #require(prefillStep)
        #expect(prefill.scheduledTokens == 80)
        var now = prefill.end
        for pass in 0..<4 {
            let outcome = engine.step(now: now)
            let step = try #require(outcome)
            #expect(step.scheduledTokens == 2, "pass \(pass)")
            now = step.end
            if pass == 0 { engine.add(request(2, prompt: Array(200..<240), output: 3, at: now)) }
        }
        let next = engine.step(now: now)
        #expect(try #require(next).scheduledTokens == 40, "the newcomer's prompt, after the run")
        #expect(drain(&engine, from: next!.end).count == 3)
    }
}

