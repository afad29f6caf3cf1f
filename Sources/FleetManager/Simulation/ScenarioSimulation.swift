import FakeVLLM
import Load

/// `understudy sim SCENARIO`: a scenario in virtual time — its fleet brought up, its load's
/// schedule (the same seeded arrivals and prompts `understudy scenario` sends), its timeline
/// run against the same lifecycle and faults — reported as the live run reports it.
public enum ScenarioSimulation {
    public static func run(_ scenario: ScenarioSpec, profiles: ProfileStore, progress: ((Double) -> Void)? = nil) throws -> ScenarioReport {
        var fleet = try VirtualFleet(scenario.fleet, profiles: profiles, policy: .default, seed: scenario.seed)
        try fleet.startUp()
        fleet.streamNames = scenario.load.map(\.name)
        let schedule = OpenLoop.schedule(rates: scenario.load.map(\.rate), from: 0, duration: scenario.duration, seed: scenario.seed)
        let defaultModel = scenario.fleet.pools[0].model
        // Prompts are counted with the first pool's tokenizer (a fleet serves one model).
        var configuration = ServerConfiguration()
        try Fleet.configure(&configuration, pool: scenario.fleet.pools[0], port: 0)
        let tokenizer = try EngineSetup(configuration, profiles: profiles).tokenizer
        let needsPrefixText = fleet.needsPrefixText
        var sink = RecordSink()
        let actions = fleet.run(schedule.map(\.time), request: { number in
            let arrival = schedule[number]
            let spec = scenario.load[arrival.stream]
            let prompt = ScenarioRunner.prompt(spec, index: arrival.index)
            return SimulatedRequest(
                stream: arrival.stream, model: spec.model ?? defaultModel, objective: spec.objective,
                promptTokenIDs: tokenizer.encode(prompt, addSpecialTokens: false), prefixText: needsPrefixText ? prompt : "",
                outputTokens: spec.maxTokens, streaming: spec.stream)
        }, from: fleet.now, timeline: scenario.timeline, watch: true, sink: &sink, progress: progress)
        return ScenarioReport(
            name: scenario.name, duration: scenario.duration, records: sink.records.sorted { $0.scheduled < $1.scheduled }, actions: actions,
            membership: fleet.membership, addresses: fleet.addresses)
    }
}

/// Every request's record, as a live scenario keeps them.
struct RecordSink: SimulationSink {
    var records: [RequestRecord] = []
    var wantsInterTokenGaps: Bool { false }
    mutating func addInterTokenGap(_ gap: Double) {}
    mutating func add(_ record: RequestRecord) { records.append(record) }
}
