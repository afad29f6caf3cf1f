import FakeVLLM
@testable import FleetManager
import Foundation
import Gateway
import InferenceAPI
import Load
import Testing

/// `understudy sim`: the fleet's engines and the gateway's picker in virtual time.
struct SimulationTests {
    static func fleet(replicas: Int = 4, engineArgs: String = "") throws -> FleetSpec {
        try FleetSpec.parse("""
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: sim}
            spec:
              pools:
              - {name: gpu, accelerator: h100-sxm, model: meta-llama/Meta-Llama-3-8B, replicas: \(replicas), labels: {app: llama},
                 adapters: [{name: sql-lora}], engineArgs: {max-loras: 1\(engineArgs)}}
            """, file: "sim.yaml")
    }

    static func plan(rates: [Double], duration: Double, models: [String] = ["meta-llama/Meta-Llama-3-8B"], streaming: Bool = true) -> BenchPlan {
        BenchPlan(
            workload: Workload(source: .synthetic(.shareGPTSynthetic), models: models.map { ($0, 1) }, seed: 5), rates: rates,
            duration: duration, streaming: streaming)
    }

    @Test func thePickerReadsFromASimulatedPodWhatItWouldScrapeFromItsPage() throws {
        // An engine with running and waiting requests on two adapters (max_loras 1).
        var configuration = ServerConfiguration()
        try Fleet.configure(&configuration, pool: try Self.fleet().pools[0], port: 0)
        let setup = try EngineSetup(configuration, profiles: FleetTests.profiles)
        var engine = Engine(config: setup.engineConfig, costModel: setup.costModel)
        for id in 0..<6 {
            engine.add(EngineRequest(
                id: RequestID(id), promptTokens: Array(repeating: 300 + id, count: 900), plannedOutput: [1, 2, 3], finishReason: .length,
                lora: LoRAAdapter(name: id % 2 == 0 ? "sql-lora" : "chat-lora", bytes: 1 << 20), arrival: 0))
        }
        _ = engine.step(now: 0)
        let metrics = EngineMetrics(modelName: configuration.model, config: setup.engineConfig, gpuMemoryUtilization: configuration.gpuMemoryUtilization)
        // Now, as the server stamps it: the newest lora_requests_info series is the one read.
        metrics.refreshGauges(engine, wallClock: Date().timeIntervalSince1970 + 1)
        let scraped = try MetricsExtractor.extract(String(buffer: metrics.render()), now: 2)
        let simulated = EndpointMetrics(engine: engine, now: 2)
        #expect(simulated.runningRequestsSize > 0 && simulated.waitingQueueSize > 0 && simulated.kvCacheUsage > 0)
        #expect(simulated == scraped)
    }

    @Test func aSimulationIsDeterministicAndServesEveryRequestBelowCapacity() throws {
        let plan = Self.plan(rates: [4, 8], duration: 5)
        var first = try FleetSimulation(try Self.fleet(), profiles: FleetTests.profiles)
        var second = try FleetSimulation(try Self.fleet(), profiles: FleetTests.profiles)
        let stages = try first.run(plan)
        #expect(try stages == second.run(plan))
        #expect(stages.map(\.sent) == plan.rates.indices.map { plan.arrivals(stage: $0).count })
        for stage in stages {
            #expect(stage.succeeded == stage.sent && stage.sent > 10)
            // Light load on an H100: a ShareGPT-sized prompt's first token within a few steps.
            #expect(stage.ttft!.p50 > 0.005 && stage.ttft!.p50 < 0.1, "\(stage.ttft!)")
            #expect(stage.itl!.p50 > 0.005 && stage.itl!.p50 < 0.05, "\(stage.itl!)")
        }
    }

    @Test func roundRobinSpreadsRequestsEvenlyAndTheDefaultPickerFollowsLoRAAffinity() throws {
        let plan = Self.plan(rates: [20], duration: 5, models: ["sql-lora"])
        var roundRobin = try FleetSimulation(try Self.fleet(), profiles: FleetTests.profiles, policy: .roundRobin)
        let spread = try roundRobin.run(plan)[0].served.values.sorted()
        #expect(spread.count == 4 && spread.last! - spread.first! <= 1, "\(spread)")
        // The same requests with GIE's default scorers: queue, KV cache, prefix; they spread too,
        // but by load, not in turn.
        var picker = try FleetSimulation(try Self.fleet(), profiles: FleetTests.profiles)
        let served = try picker.run(plan)[0]
        #expect(served.succeeded == served.sent && served.served.count == 4)
    }

    @Test func refusalsAreRecordedAsTheClientWouldSeeThem() throws {
        // An adapter no pod serves: the pods answer 404, as vLLM does.
        var simulation = try FleetSimulation(try Self.fleet(replicas: 2), profiles: FleetTests.profiles)
        let stage = try simulation.run(Self.plan(rates: [5], duration: 2, models: ["no-such-adapter"]))[0]
        #expect(stage.succeeded == 0 && stage.errors == ["HTTP 404": stage.sent])
    }
}
