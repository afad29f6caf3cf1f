/// What `understudy profiles predict` prints: a fixed batch run through the same engine and cost
/// model the server uses, in virtual time — the shape of vLLM's `benchmark_latency.py`.
public struct Prediction: Sendable, Equatable {
    public var batch: Int
    public var inputTokens: Int
    public var outputTokens: Int
    /// Mean time to first token over the batch, seconds.
    public var timeToFirstToken: Double
    /// Mean inter-token latency over all decode tokens, seconds.
    public var interTokenLatency: Double
    /// Time until the whole batch finished (what the latency test reports), seconds.
    public var endToEndLatency: Double
    public var outputTokensPerSecond: Double
    /// KV blocks per GPU the engine was sized with.
    public var kvBlocks: Int

    /// Runs `batch` requests of `input` prompt tokens and exactly `output` generated tokens, all
    /// arriving at time zero, until every one finishes.
    public static func run(engineConfig: EngineConfig, costModel: CostModel, batch: Int, input: Int, output: Int) -> Prediction {
        var engine = Engine(config: engineConfig, costModel: costModel)
        for index in 0..<batch {
            // Distinct prompts, so no request hits another's prefix cache (as with dummy weights
            // and random token ids in vLLM's benchmark).
            let prompt = (0..<input).map { 1000 + (index * 7919 + $0 * 104_729) % 30_000 }
            engine.add(EngineRequest(
                id: RequestID(index), promptTokens: prompt, plannedOutput: Array(repeating: 0, count: output),
                finishReason: .length, arrival: 0, maxTokensParam: output))
        }
        var now = 0.0
        var ttftSum = 0.0, itlSum = 0.0, itlCount = 0
        while let outcome = engine.step(now: now) {
            now = outcome.end
            for progress in outcome.progress where !progress.newTokens.isEmpty {
                if let previous = progress.previousTokenTime {
                    itlSum += outcome.end - previous
                    itlCount += 1
                } else {
                    ttftSum += outcome.end
                }
            }
        }
        return Prediction(
            batch: batch, inputTokens: input, outputTokens: output,
            timeToFirstToken: ttftSum / Double(max(batch, 1)),
            interTokenLatency: itlCount > 0 ? itlSum / Double(itlCount) : 0,
            endToEndLatency: now,
            outputTokensPerSecond: now > 0 ? Double(batch * output) / now : .infinity,
            kvBlocks: engineConfig.numGPUBlocks)
    }
}
