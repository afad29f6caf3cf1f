import FakeVLLM
import Foundation
import Gateway
import InferenceAPI
import Load
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Runs a scenario in this process: brings its fleet up, waits for every pod to be Ready,
/// sends its load through the gateway while its timeline runs, watches which pods the gateway
/// may route to, then drains the fleet and reports what clients saw.
public enum ScenarioRunner {
    /// `progress` hears each action as it happens. `envoy`: the load goes through Envoy asking
    /// the fleet's picker over ext_proc, not through the built-in proxy.
    public static func run(
        _ scenario: ScenarioSpec, profiles: ProfileStore, backoff: RestartBackoff = RestartBackoff(), envoy: Bool = false,
        progress: (@Sendable (String) -> Void)? = nil
    ) async throws -> ScenarioReport {
        let fleet = try await Fleet.start(scenario.fleet, profiles: profiles, backoff: backoff)
        var front: EnvoyFront?
        do {
            if envoy {
                front = try await EnvoyFront.start(
                    fleet: fleet, host: "127.0.0.1", port: 0, picker: .understudy(port: 0, healthPort: 0, security: .selfSigned),
                    maxBodyBytes: scenario.fleet.dataPlane.maxBodyBytes, logger: Logger(label: "epp", factory: { _ in SwiftLogNoOpLogHandler() }))
            }
            let report = try await run(scenario, on: fleet, port: front?.envoy.listenerPort, progress: progress)
            await front?.stop()
            await fleet.stop()
            return report
        } catch {
            await front?.stop()
            await fleet.stop()
            throw error
        }
    }

    /// Runs the load and timeline against a fleet already started (which it leaves running),
    /// sending the load to `port` (default: the fleet's gateway).
    public static func run(
        _ scenario: ScenarioSpec, on fleet: Fleet, port: Int? = nil, progress: (@Sendable (String) -> Void)? = nil
    ) async throws -> ScenarioReport {
        let store = fleet.gateway.picker.datastore
        let expected = scenario.fleet.pools.reduce(0) { $0 + $1.replicas }
        let longestStartup = scenario.fleet.pools.map(\.startupSeconds).max() ?? 0
        let readyBy = ContinuousClock.now + .seconds(longestStartup + 30)
        while store.candidates(now: store.now).count < expected {
            guard ContinuousClock.now < readyBy else {
                throw FleetError("only \(store.candidates(now: store.now).count) of \(expected) pods became Ready and routable")
            }
            try await Task.sleep(for: .milliseconds(20))
        }

        let client = LoadClient(host: "127.0.0.1", port: port ?? fleet.gateway.port, group: MultiThreadedEventLoopGroup.singleton)
        defer { client.close() }
        let watcher = CandidateWatcher()
        let watching = Task { await watcher.watch(fleet, clock: client.now) }
        let timeline = Task { () -> [ScenarioReport.ActionRecord] in
            var done: [ScenarioReport.ActionRecord] = []
            var timeline = ChaosTimeline(scenario.timeline)
            while let due = timeline.nextTime {
                let wait = due - client.now()
                // Cancelled only with the run: then the remaining actions run at once.
                if wait > 0 { try? await Task.sleep(for: .nanoseconds(Int64(wait * 1e9))) }
                for step in timeline.actions(due: max(due, client.now())) {
                    let at = client.now()
                    var failure: String?
                    do {
                        try await fleet.perform(step.action)
                    } catch {
                        failure = "\(error)"
                    }
                    progress?(String(format: "%7.2f s  %@%@", at, step.action.summary, failure.map { " — failed: \($0)" } ?? ""))
                    done.append(.init(at: at, action: step.action, failure: failure))
                }
            }
            return done
        }
        let defaultModel = scenario.fleet.pools[0].model
        let streams = scenario.load.map { spec in
            LoadStream(name: spec.name, rate: spec.rate) { index in Self.request(spec, index: index, defaultModel: defaultModel) }
        }
        let arrivals = OpenLoop.schedule(rates: streams.map(\.rate), from: 0, duration: scenario.duration, seed: scenario.seed)
        let records = await OpenLoop.run(streams, arrivals: arrivals, client: client)
        let actions = await timeline.value
        watching.cancel()
        let membership = await watching.value
        return ScenarioReport(
            name: scenario.name, duration: scenario.duration, records: records, actions: actions, membership: membership,
            addresses: Dictionary(fleet.list().map { ($0.name, $0.address) }, uniquingKeysWith: { first, _ in first }))
    }

    /// The prompt of a load stream's `index`-th request: about `promptTokens` words, distinct per
    /// request.
    static func prompt(_ spec: LoadSpec, index: Int) -> String {
        promptHeader(spec, index: index) + promptBody(spec, index: index)
    }

    /// What sets a request's prompt apart: its number and stream.
    static func promptHeader(_ spec: LoadSpec, index: Int) -> String { "Request \(index) of \(spec.name):" }

    /// The words after the header; the same for requests whose index is the same modulo
    /// `promptWords.count`.
    static func promptBody(_ spec: LoadSpec, index: Int) -> String {
        var body = ""
        for word in 0..<max(0, spec.promptTokens - 5) { body += " " + promptWords[(word + index) % promptWords.count] }
        return body
    }

    static let promptWords = ["the", "fleet", "serves", "tokens", "while", "pods", "fail", "and", "recover", "again"]

    /// A request of a load stream: a prompt of about `promptTokens` words (distinct per request,
    /// so the prefix cache does not make them alike), `max_tokens` generated with `ignore_eos`.
    static func request(_ spec: LoadSpec, index: Int, defaultModel: String) -> LoadRequest {
        var body: JSONObject = [
            "model": .string(spec.model ?? defaultModel), "prompt": .string(prompt(spec, index: index)), "max_tokens": .integer(spec.maxTokens),
            "ignore_eos": .bool(true),
        ]
        if spec.stream {
            body["stream"] = .bool(true)
            body["stream_options"] = .object(["include_usage": .bool(true)])
        }
        var buffer = ByteBuffer()
        buffer.writeJSON(.object(body))
        let headers = spec.objective.map { [("x-gateway-inference-objective", $0)] } ?? []
        return LoadRequest(stream: spec.name, body: buffer, headers: headers, streaming: spec.stream)
    }
}

/// Samples, every 10 ms, which pods the gateway may route to (its candidates), and records
/// when each pod left or joined them.
actor CandidateWatcher {
    func watch(_ fleet: Fleet, clock: @Sendable () -> Double) async -> [String: [ScenarioReport.Membership]] {
        let store = fleet.gateway.picker.datastore
        var changes: [String: [ScenarioReport.Membership]] = [:]
        var inside: Set<String> = []
        while !Task.isCancelled {
            let addresses = Set(store.candidates(now: store.now).map(\.endpoint.address))
            let now = clock()
            let pods = fleet.list()
            for pod in pods {
                let isCandidate = addresses.contains(pod.address)
                if isCandidate != inside.contains(pod.name) || changes[pod.name] == nil {
                    changes[pod.name, default: []].append(.init(at: now, routable: isCandidate))
                    if isCandidate { inside.insert(pod.name) } else { inside.remove(pod.name) }
                }
            }
            // A pod that went (drained, scaled down) is not routable either.
            for gone in inside.subtracting(pods.map(\.name)) {
                changes[gone, default: []].append(.init(at: now, routable: false))
                inside.remove(gone)
            }
            // Cancelled means the run is over: the loop condition ends the watch.
            try? await Task.sleep(for: .milliseconds(10))
        }
        return changes
    }
}
