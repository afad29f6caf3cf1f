@testable import Gateway
import Testing

func makeDirector(_ yaml: String, config: EndpointPickerConfig = .default) throws -> Director {
    var resources = GatewayResources()
    try ManifestLoader.load(yaml, file: "test.yaml", into: &resources)
    return Director(resources: resources, pool: resources.pools[0], scheduler: try Scheduler(config: config, seed: 3), seed: 3)
}

let pool = GatewayStack.poolYAML

@Suite struct DirectorTests {
    @Test func weightedSplitHoldsWithinThreePercent() throws {
        var director = try makeDirector(pool + """

            ---
            apiVersion: inference.networking.x-k8s.io/v1alpha2
            kind: InferenceModelRewrite
            metadata: {name: rollout}
            spec:
              poolRef: {name: pool}
              rules:
              - matches: [{model: {value: small-segment-lora}}]
                targets: [{modelRewrite: v1, weight: 90}, {modelRewrite: v2, weight: 10}]
            """)
        let candidates = [candidate(1), candidate(2)]
        var counts: [String: Int] = [:]
        for _ in 0..<2000 {
            guard case .route(_, let target, let client, _) = director.decide(InferenceRequest(model: "small-segment-lora"), candidates: candidates, now: 0) else {
                Issue.record("not routed"); return
            }
            #expect(client == "small-segment-lora")
            counts[target, default: 0] += 1
        }
        let share = Double(counts["v1"] ?? 0) / 2000
        #expect(abs(share - 0.9) <= 0.03)
    }

    @Test func shedsOnlySheddableTrafficWhenSaturated() throws {
        var director = try makeDirector(pool + """

            ---
            apiVersion: inference.networking.x-k8s.io/v1alpha2
            kind: InferenceObjective
            metadata: {name: batch}
            spec: {priority: -1, poolRef: {name: pool}}
            ---
            apiVersion: inference.networking.x-k8s.io/v1alpha2
            kind: InferenceObjective
            metadata: {name: interactive}
            spec: {priority: 5, poolRef: {name: pool}}
            """)
        let saturated = [candidate(1, queue: 20, at: 0), candidate(2, queue: 30, at: 0)]
        let shed = director.decide(InferenceRequest(model: "m", objectiveHeader: "batch"), candidates: saturated, now: 0)
        #expect(shed == .reject(status: 429, code: "ResourceExhausted", message: "system saturated, sheddable request dropped"))
        guard case .route(_, _, _, let priority) = director.decide(InferenceRequest(model: "m", objectiveHeader: "interactive"), candidates: saturated, now: 0) else {
            Issue.record("critical traffic was not routed"); return
        }
        #expect(priority == 5)
        // Not saturated: sheddable traffic goes through.
        guard case .route = director.decide(InferenceRequest(model: "m", objectiveHeader: "batch"), candidates: [candidate(1, at: 0)], now: 0) else {
            Issue.record("sheddable traffic refused without saturation"); return
        }
    }

    @Test func errorsAsGIE() throws {
        var director = try makeDirector(pool + """

            ---
            apiVersion: inference.networking.x-k8s.io/v1alpha2
            kind: InferenceModel
            metadata: {name: base}
            spec: {modelName: llama, criticality: Sheddable, poolRef: {name: pool}}
            """)
        guard case .reject(400, _, _) = director.decide(InferenceRequest(model: nil), candidates: [candidate(1)], now: 0) else { Issue.record("no 400"); return }
        // A model no InferenceModel names is served as Sheddable (GIE v0.5: "using default").
        guard case .route(_, "other", "other", -1) = director.decide(InferenceRequest(model: "other"), candidates: [candidate(1)], now: 0) else {
            Issue.record("an unnamed model was not routed as Sheddable"); return
        }
        guard case .reject(429, _, _) = director.decide(InferenceRequest(model: "other"), candidates: [candidate(1, queue: 50)], now: 0) else {
            Issue.record("an unnamed model was not shed under saturation"); return
        }
        guard case .reject(503, _, _) = director.decide(InferenceRequest(model: "llama"), candidates: [], now: 0) else { Issue.record("no 503"); return }
        // An InferenceModel's Sheddable criticality sheds under saturation too.
        guard case .reject(429, _, _) = director.decide(InferenceRequest(model: "llama"), candidates: [candidate(1, queue: 50)], now: 0) else { Issue.record("no 429"); return }
    }
}
