import FakeVLLM
import InferenceAPI
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
        let prompts = scenario.load.map { PromptTokens($0, tokenizer: tokenizer) }
        var sink = RecordSink()
        let actions = fleet.run(schedule.map(\.time), request: { number in
            let arrival = schedule[number]
            let spec = scenario.load[arrival.stream]
            return SimulatedRequest(
                stream: arrival.stream, model: spec.model ?? defaultModel, objective: spec.objective,
                promptTokenIDs: prompts[arrival.stream].tokens(arrival.index),
                prefixText: needsPrefixText ? prompts[arrival.stream].text(arrival.index) : "",
                outputTokens: spec.maxTokens, streaming: spec.stream)
        }, from: fleet.now, timeline: ChaosTimeline(scenario.timeline), watch: true, sink: &sink, progress: progress)
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

/// A load stream's prompts as token ids, the same as tokenizing each whole prompt: the words
/// after the header repeat with the index, so their tokens are made once per variant and the
/// header's are added (checked on the first prompts; a tokenizer that joins tokens across the
/// boundary gets each prompt tokenized whole).
struct PromptTokens {
    private let spec: LoadSpec
    private let tokenizer: any TextTokenizer
    private let bodies: [[Int]]?
    private let bodyTexts: [String]

    init(_ spec: LoadSpec, tokenizer: any TextTokenizer) {
        self.spec = spec
        self.tokenizer = tokenizer
        let variants = ScenarioRunner.promptWords.count
        bodyTexts = (0..<variants).map { ScenarioRunner.promptBody(spec, index: $0) }
        let bodies = (0..<variants).map { tokenizer.encode(ScenarioRunner.promptBody(spec, index: $0), addSpecialTokens: false) }
        let composes = (0..<variants * 2).allSatisfy { index in
            tokenizer.encode(ScenarioRunner.prompt(spec, index: index), addSpecialTokens: false)
                == tokenizer.encode(ScenarioRunner.promptHeader(spec, index: index), addSpecialTokens: false) + bodies[index % variants]
        }
        self.bodies = composes ? bodies : nil
    }

    /// The prompt's text, as `ScenarioRunner.prompt` makes it.
    func text(_ index: Int) -> String {
        ScenarioRunner.promptHeader(spec, index: index) + bodyTexts[index % bodyTexts.count]
    }

    func tokens(_ index: Int) -> [Int] {
        guard let bodies else { return tokenizer.encode(ScenarioRunner.prompt(spec, index: index), addSpecialTokens: false) }
        return tokenizer.encode(ScenarioRunner.promptHeader(spec, index: index), addSpecialTokens: false) + bodies[index % bodies.count]
    }
}
