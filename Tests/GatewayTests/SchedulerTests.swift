@testable import Gateway
import InferenceAPI
import Testing

func candidate(_ number: Int, queue: Int = 0, running: Int = 0, kv: Double = 0, active: [String] = [], waiting: [String] = [], maxLora: Int = 0, at time: Double = 0) -> Candidate {
    Candidate(
        endpoint: Endpoint(address: "10.0.0.\(number):8000", podName: "pod-\(number)"),
        metrics: EndpointMetrics(
            waitingQueueSize: queue, runningRequestsSize: running, kvCacheUsage: kv, activeAdapters: active,
            waitingAdapters: waiting, maxActiveAdapters: maxLora, updateTime: time))
}

@Suite struct ScorerTests {
    @Test(arguments: [([0, 5, 10], [1.0, 0.5, 0.0]), ([3, 3, 3], [1.0, 1.0, 1.0])])
    func queueScorerIsMinMax(_ queues: [Int], _ expected: [Double]) {
        let candidates = queues.enumerated().map { candidate($0.offset, queue: $0.element) }
        var state = CycleState(now: 0)
        #expect(QueueScorer().score(SchedulingRequest(targetModel: "m"), candidates, Array(candidates.indices), &state) == expected)
    }

    @Test func loraAffinityScoresAsGIE() {
        let candidates = [
            candidate(1, active: ["sql"], maxLora: 2),                  // running there: 1
            candidate(2, active: ["a"], maxLora: 2),                    // a free slot: 0.8
            candidate(3, active: ["a", "b"], waiting: ["sql"], maxLora: 2), // waiting there: 0.6
            candidate(4, active: ["a", "b"], maxLora: 2),               // full: 0
        ]
        var state = CycleState(now: 0)
        #expect(LoRAAffinityScorer().score(SchedulingRequest(targetModel: "sql"), candidates, [0, 1, 2, 3], &state) == [1, 0.8, 0.6, 0])
    }

    @Test func utilizationDetectorSaturatesOnQueueKVOrStaleness() {
        let detector = UtilizationDetector()
        #expect(detector.saturation([candidate(1, queue: 0, kv: 0.4, at: 10)], now: 10.1) == 0.5)
        #expect(detector.saturation([candidate(1, queue: 10, at: 10)], now: 10.1) == 2)
        // Metrics older than 200 ms count as saturated.
        #expect(detector.saturation([candidate(1, at: 10)], now: 10.3) == 1)
        // As a filter it drops saturated endpoints, unless that would drop them all.
        var state = CycleState(now: 0)
        let candidates = [candidate(1, queue: 9), candidate(2, queue: 1)]
        #expect(detector.filter(SchedulingRequest(targetModel: "m"), candidates, [0, 1], &state) == [1])
        #expect(detector.filter(SchedulingRequest(targetModel: "m"), [candidate(1, queue: 9)], [0], &state) == [0])
    }
}

@Suite struct SchedulerTests {
    @Test func defaultProfilePrefersTheShortQueueAndEmptyCache() throws {
        var scheduler = try Scheduler(config: .default, seed: 1)
        let candidates = [candidate(1, queue: 8, kv: 0.7), candidate(2, queue: 0, kv: 0.1), candidate(3, queue: 4, kv: 0.4)]
        let picked = scheduler.schedule(SchedulingRequest(targetModel: "m"), candidates: candidates, now: 0)
        #expect(picked?.first?.address == "10.0.0.2:8000")
    }

    @Test func aRepeatedLongPrefixStaysOnOneEndpoint() throws {
        var scheduler = try Scheduler(config: .default, seed: 7)
        let candidates = (1...4).map { candidate($0) }
        let prompt = String(repeating: "You are a helpful assistant for a shop that sells bicycles. ", count: 20)
        var targets: Set<String> = []
        for question in 0..<20 {
            let request = SchedulingRequest(targetModel: "m", prefixText: prompt + "Question \(question)?")
            targets.insert(try #require(scheduler.schedule(request, candidates: candidates, now: 0)?.first?.address))
        }
        #expect(targets.count == 1)
        // Equal loads and no shared prefix: ties break at random, so short prompts spread.
        var spread: Set<String> = []
        for question in 0..<40 {
            spread.insert(try #require(scheduler.schedule(SchedulingRequest(targetModel: "m", prefixText: "q\(question)"), candidates: candidates, now: 0)?.first?.address))
        }
        #expect(spread.count > 1)
    }

    @Test func thePrefixIndexForgetsEachEndpointsLeastRecentlySentBlocks() {
        var index = PrefixIndex(capacityPerEndpoint: 3)
        index.add([1, 2, 3], to: "a:8000")
        index.add([1], to: "a:8000")  // 1 is recent again; 2 is now the oldest
        index.add([3, 9], to: "b:8000")
        index.add([4], to: "a:8000")
        #expect(index.matches([1]) == ["a:8000": 1])
        #expect(index.matches([2]).isEmpty, "evicted from a, never on b")
        #expect(index.matches([3, 4]) == ["a:8000": 2, "b:8000": 1])
        // Sent again and again, the same blocks stay; the oldest of the last sending goes first.
        for _ in 0..<5_000 { index.add([1, 3, 4], to: "a:8000") }
        index.add([5], to: "a:8000")
        #expect(index.matches([1]).isEmpty)
        #expect(index.matches([5]) == ["a:8000": 1] && index.matches([3]) == ["a:8000": 1, "b:8000": 1])
        index.remove("a:8000")
        #expect(index.matches([4]).isEmpty && index.matches([3]) == ["b:8000": 1])
    }

    /// Against a plain model of GIE's index (an LRU list per endpoint, a block sent again moving
    /// to its front): random sends of few blocks to few endpoints, so that blocks are shared,
    /// re-sent, evicted and forgotten with their endpoint, the key 0 among them.
    @Test func thePrefixIndexAnswersAsAnLRUPerEndpointWould() {
        var index = PrefixIndex(capacityPerEndpoint: 5)
        var model: [String: [UInt64]] = [:]  // oldest first
        var random = SystemRandomNumberGenerator()
        let endpoints = ["a:1", "b:1", "c:1", "d:1"]
        for step in 0..<20_000 {
            let endpoint = endpoints.randomElement(using: &random)!
            let blocks = (0..<Int.random(in: 1...6, using: &random)).map { _ in UInt64.random(in: 0..<16, using: &random) }
            if step % 97 == 0 {
                index.remove(endpoint)
                model[endpoint] = nil
                continue
            }
            index.add(blocks, to: endpoint)
            for block in blocks {
                model[endpoint, default: []].removeAll { $0 == block }
                model[endpoint, default: []].append(block)
                if model[endpoint]!.count > 5 { model[endpoint]!.removeFirst() }
            }
            let probe = (0..<4).map { _ in UInt64.random(in: 0..<16, using: &random) }
            var expected: [String: Int] = [:]
            for block in probe {
                let holders = model.filter { $0.value.contains(block) }.keys
                if holders.isEmpty { break }
                for holder in holders { expected[holder, default: 0] += 1 }
            }
            guard index.matches(probe) == expected else {
                Issue.record("step \(step): \(probe) matched \(index.matches(probe)), expected \(expected)")
                return
            }
        }
    }

    @Test func prefixHashesChainWithXXHash64() {
        let hashes = PrefixHasher(blockSizeTokens: 1).hashes(model: "m", text: "abcdefgh!")  // 4-character blocks
        #expect(hashes.count == 2)
        var first = Array("abcd".utf8)
        withUnsafeBytes(of: XXHash64.hash(Array("m".utf8)).littleEndian) { first.append(contentsOf: $0) }
        #expect(hashes[0] == XXHash64.hash(first))
    }

    @Test func roundRobinBaselineRotates() throws {
        var config = EndpointPickerConfig()
        config.plugins = [.init(name: "round-robin-picker", type: "round-robin-picker", parameters: nil)]
        config.profiles = [.init(name: "default", plugins: [.init(pluginRef: "round-robin-picker", weight: nil)])]
        var scheduler = try Scheduler(config: config)
        let candidates = (1...3).map { candidate($0) }
        let picks = (0..<6).compactMap { _ in scheduler.schedule(SchedulingRequest(targetModel: "m"), candidates: candidates, now: 0)?.first?.podName }
        #expect(picks == ["pod-1", "pod-2", "pod-3", "pod-1", "pod-2", "pod-3"])
    }

    /// The simulator passes one candidates array until its next scrape, and the picker keeps
    /// the request-independent scores for it; the live datastore builds a new array for each
    /// request. Both must pick alike, and a new array (new metrics) must be scored afresh.
    @Test func keptScoresPickAsScoringAfresh() throws {
        var kept = try Scheduler(config: .default, seed: 3)
        var afresh = try Scheduler(config: .default, seed: 3)
        let prompts = (0..<6).map { String(repeating: "Context \($0) for a long conversation about trains. ", count: 12) }
        for round in 0..<3 {
            // Queues and caches differ by round, with ties among them.
            let candidates = (1...8).map { number -> Candidate in
                let queue = (number * 3 + round * 5) % 7
                let kv = Double((number + round) % 4) / 4
                return candidate(number, queue: queue, kv: kv)
            }
            for request in 0..<40 {
                let scheduling = SchedulingRequest(targetModel: "m", prefixText: prompts[request % prompts.count] + "Question \(request)?")
                let fromKept = kept.schedule(scheduling, candidates: candidates, now: 0)?.first?.address
                let fromNew = afresh.schedule(scheduling, candidates: candidates.map { $0 }, now: 0)?.first?.address
                #expect(fromKept != nil && fromKept == fromNew, "round \(round), request \(request)")
            }
        }
        // Same addresses, new metrics: the pick follows the new metrics, not the kept scores.
        var scheduler = try Scheduler(config: .default, seed: 3)
        var candidates = (1...4).map { candidate($0, queue: $0 == 1 ? 0 : 9) }
        for _ in 0..<2 { #expect(scheduler.schedule(SchedulingRequest(targetModel: "m"), candidates: candidates, now: 0)?.first?.podName == "pod-1") }
        candidates[0].metrics?.waitingQueueSize = 20
        candidates[3].metrics?.waitingQueueSize = 0
        #expect(scheduler.schedule(SchedulingRequest(targetModel: "m"), candidates: candidates, now: 0)?.first?.podName == "pod-4")
    }

    @Test func unemulatedPluginsAreRefusedByName() {
        var config = EndpointPickerConfig()
        config.plugins = [.init(name: "latency-scorer", type: "latency-scorer", parameters: nil)]
        config.profiles = [.init(name: "default", plugins: [.init(pluginRef: "latency-scorer", weight: 1)])]
        #expect { try Scheduler(config: config) } throws: { String(describing: $0).contains("\"latency-scorer\" is not emulated yet") }
    }
}

@Suite struct LegacyDecisionTreeTests {
    let tree = LegacyDecisionTree()

    func run(_ candidates: [Candidate], priority: Int, model: String = "m") -> [String] {
        var state = CycleState(now: 0, seed: 1)
        return tree.filter(SchedulingRequest(targetModel: model, priority: priority), candidates, Array(candidates.indices), &state)
            .map { candidates[$0].endpoint.podName }
    }

    @Test func sheddableRequestsNeedARoomyPod() {
        #expect(run([candidate(1, queue: 6), candidate(2, kv: 0.9)], priority: -1).isEmpty)
        #expect(run([candidate(1, queue: 6), candidate(2, queue: 2, kv: 0.5)], priority: -1) == ["pod-2"])
        // The same pods still serve a request that is not sheddable.
        #expect(!run([candidate(1, queue: 6), candidate(2, kv: 0.9)], priority: 0).isEmpty)
    }

    @Test func prefersTheAdapterThenTheShortQueueThenTheEmptyCache() {
        let candidates = [
            candidate(1, queue: 3, kv: 0.2, active: ["sql"], maxLora: 2),
            candidate(2, queue: 0, kv: 0.1, active: ["a", "b"], maxLora: 2),
            candidate(3, queue: 9, kv: 0.1, active: ["sql"], maxLora: 2),
        ]
        #expect(run(candidates, priority: 0, model: "sql") == ["pod-1"])
        // Without adapters in play the shortest queue, then the least KV, wins.
        #expect(run([candidate(1, queue: 0, kv: 0.5), candidate(2, queue: 0, kv: 0.1), candidate(3, queue: 7)], priority: 0) == ["pod-2"])
    }
}
