@testable import FakeVLLM
import NIOCore
import NIOPosix
import Testing

/// The pod's rules live in `PodCore`; the live driver (an event loop's timers) and the
/// simulator's driver (virtual time) must run them alike.
struct PodCoreTests {
    /// What one step did, without when it started (a busy machine may start a live step late).
    struct StepRecord: Equatable, CustomStringConvertible {
        var duration: Double
        var scheduledTokens: Int
        var preemptions: Int
        var prefixCacheHits: Int
        var progress: [String]

        init(_ outcome: StepOutcome) {
            duration = outcome.duration
            scheduledTokens = outcome.scheduledTokens
            preemptions = outcome.preemptions
            prefixCacheHits = outcome.prefixCacheHits
            progress = outcome.progress.map { "\($0.id):\($0.newTokens)\($0.finishReason.map { " \($0.rawValue)" } ?? "")" }
        }

        var description: String { "\(scheduledTokens) tokens, \(preemptions) preempted, \(prefixCacheHits) hits: \(progress)" }
    }

    /// A pod with a small batch and token budget, so requests queue, prefill in chunks and
    /// share a prefix; every step made twice as slow by a fault.
    static func makeCore() throws -> PodCore {
        var configuration = ServerConfiguration()
        configuration.maxNumSeqs = 3
        configuration.maxNumBatchedTokens = 128
        var core = PodCore(configuration: configuration, setup: try EngineSetup(configuration, profiles: LiveServer.profiles))
        core.apply(.slow(2))
        return core
    }

    /// Ten sequences: a shared 64-token prefix, tails of different lengths, outputs of 5 to 32
    /// tokens ending by EOS or by length.
    static func requests(_ core: inout PodCore) -> [EngineRequest] {
        let prefix = Array(1000..<1064)
        return (0..<10).map { index in
            let output = [5, 32, 12, 20, 7, 28, 9, 16, 24, 11][index]
            return EngineRequest(
                id: core.makeRequestID(), promptTokens: prefix + Array(2000 + index * 500 ..< 2000 + index * 500 + 30 + index * 37),
                plannedOutput: (0..<output).map { 5000 + index * 100 + $0 }, finishReason: index % 2 == 0 ? .stop : .length, arrival: 0,
                maxTokensParam: 32)
        }
    }

    @Test func theLiveAndTheVirtualDriverRunThePodsRulesAlike() async throws {
        // Virtual time: the simulator's driver, stepped to each step's end.
        var virtualCore = try Self.makeCore()
        let sent = Self.requests(&virtualCore)
        var virtual = VirtualPodDriver(core: virtualCore)
        for request in sent { virtual.submit(request, now: 0) }
        var simulated: [StepRecord] = []
        while let time = virtual.nextEvent {
            if let outcome = virtual.advance(now: time) { simulated.append(StepRecord(outcome)) }
        }

        // Real time: the live server's driver on an event loop (ten times faster than the
        // accelerator), the same requests submitted in one tick.
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let finished = loop.makePromise(of: [StepRecord].self)
        // The driver's timers keep it (and the collector, its sink) alive until the last step.
        try await loop.submit {
            var core = try Self.makeCore()
            let requests = Self.requests(&core)
            let metrics = EngineMetrics(
                modelName: core.configuration.primaryModelName, config: core.setup.engineConfig, gpuMemoryUtilization: 0.9,
                cacheDtype: "auto", showHiddenMetrics: false)
            let driver = EngineDriver(loop: loop, core: core, metrics: metrics, timeScale: 10)
            let collector = Collector(expected: requests.count, done: finished)
            driver.stepObserver = { collector.steps.append(StepRecord($0)) }
            for request in requests { driver.submit(request, sink: collector) }
        }.get()
        let live = try await finished.futureResult.get()

        #expect(simulated.count > 20, "enough steps to queue, chunk and finish: \(simulated.count)")
        #expect(simulated.contains { $0.prefixCacheHits > 0 })
        #expect(live.count == simulated.count)
        for (index, (liveStep, simulatedStep)) in zip(live, simulated).enumerated() {
            #expect(liveStep == simulatedStep, "step \(index + 1)")
            if liveStep != simulatedStep { break }
        }
        // Every planned token came out, and each request finished as planned.
        let tokens = simulated.flatMap(\.progress)
        #expect(tokens.filter { $0.hasSuffix(" stop") }.count == 5)
        #expect(tokens.filter { $0.hasSuffix(" length") }.count == 5)
    }

    /// Receives every sequence's progress; fulfils `done` with the steps once all have finished.
    final class Collector: SequenceSink {
        var steps: [StepRecord] = []
        private var remaining: Int
        private let done: EventLoopPromise<[StepRecord]>

        init(expected: Int, done: EventLoopPromise<[StepRecord]>) {
            remaining = expected
            self.done = done
        }

        func receive(_ progress: RequestProgress) {
            guard progress.finishReason != nil else { return }
            remaining -= 1
            if remaining == 0 { done.succeed(steps) }
        }
    }
}
