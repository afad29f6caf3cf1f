import Foundation
import Logging

/// vLLM's periodic engine stats line (V1's `LoggingStatLogger`, as in 0.11.0), every
/// `VLLM_LOG_STATS_INTERVAL` seconds (10 by default): prompt and generation throughput over
/// the interval, requests running and waiting, KV-cache usage and prefix-cache hit rate; at info
/// when there was throughput in this interval or the one before, else at debug ("avoid log
/// noise on an idle production system"). The hit rate is the interval's (vLLM's averages its
/// last 1,000 requests).
struct EngineStatsLine {
    struct Totals {
        var promptTokens = 0.0
        var generationTokens = 0.0
        var prefixQueries = 0.0
        var prefixHits = 0.0
    }

    private var last = Totals()
    private var lastTime: Double
    private var lastPromptThroughput = 0.0
    private var lastGenerationThroughput = 0.0

    init(now: Double) { lastTime = now }

    /// The line for the interval ending `now` (seconds), and the level to log it at.
    mutating func next(now: Double, totals: Totals, running: Int, waiting: Int, kvCacheUsage: Double) -> (Logger.Level, String) {
        let elapsed = max(now - lastTime, 1e-9)
        let prompt = (totals.promptTokens - last.promptTokens) / elapsed
        let generation = (totals.generationTokens - last.generationTokens) / elapsed
        let queries = totals.prefixQueries - last.prefixQueries
        let hitRate = queries > 0 ? (totals.prefixHits - last.prefixHits) / queries : 0
        let level: Logger.Level = [prompt, generation, lastPromptThroughput, lastGenerationThroughput].allSatisfy { $0 == 0 } ? .debug : .info
        last = totals
        lastTime = now
        lastPromptThroughput = prompt
        lastGenerationThroughput = generation
        let text = "Engine 000: Avg prompt throughput: \(Self.oneDecimal(prompt)) tokens/s, Avg generation throughput: \(Self.oneDecimal(generation)) tokens/s, "
            + "Running: \(running) reqs, Waiting: \(waiting) reqs, GPU KV cache usage: \(Self.oneDecimal(kvCacheUsage * 100))%, "
            + "Prefix cache hit rate: \(Self.oneDecimal(hitRate * 100))%"
        return (level, text)
    }

    /// Python's `%.1f`.
    static func oneDecimal(_ value: Double) -> String { String(format: "%.1f", value) }
}
