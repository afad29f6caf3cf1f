import ArgumentParser
import Foundation
import Load
import NIOCore

/// `understudy fuzz`: hostile requests against a running server or gateway, and what came back.
struct FuzzCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "Send mutated OpenAI/vLLM requests to a server and report 5xx answers, hangs and dropped connections.")

    @Option(help: "The server: a pod (understudy serve) or a gateway.") var target = "http://127.0.0.1:8000"
    @Option(help: "Cases to send.") var cases = 100_000
    @Option(help: "Seed of the cases (the same seed sends the same cases).") var seed: UInt64 = 1
    @Option(help: "Requests in flight at once.") var concurrency = 16
    @Option(help: "Seconds after which an unanswered request counts as a hang.") var hangAfter = 5.0
    @Option(help: "The model the valid requests name.") var model = "meta-llama/Meta-Llama-3-8B"

    func validate() throws {
        guard (1...100_000_000).contains(cases) else { throw ValidationError("--cases must be between 1 and 100000000") }
        guard (1...1024).contains(concurrency) else { throw ValidationError("--concurrency must be between 1 and 1024") }
        guard hangAfter > 0, hangAfter <= 3600 else { throw ValidationError("--hang-after must be in (0, 3600] seconds") }
    }

    func run() async throws {
        guard let url = URL(string: target), url.scheme == "http", let host = url.host, let port = url.port ?? 80 as Int? else {
            throw ValidationError("--target must be an http://host:port URL")
        }
        let run = FuzzRun(cases: cases, seed: seed, concurrency: concurrency, hangAfter: .nanoseconds(Int64(hangAfter * 1e9)), model: model)
        let started = ContinuousClock.now
        let total = cases
        let report = await run.run(host: host, port: port) { done in
            print("  \(done) of \(total) cases")
            fflush(nil)
        }
        print("understudy fuzz \(target), seed \(seed): \(report) in \(started.duration(to: .now).formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 1))))")
        for failure in report.failures { print("  FAILED: \(failure)") }
        if report.failed > 0 { throw ExitCode(1) }
    }
}
