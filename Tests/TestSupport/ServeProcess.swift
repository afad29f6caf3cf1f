import Foundation

/// The `understudy` executable built beside the test bundle (`swift build` builds it; `swift test`
/// does too).
public func understudyExecutable() throws -> String {
    let path = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("understudy").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw MissingTool(name: "the understudy executable at \(path) (run `swift build` first)")
    }
    return path
}

/// Runs `understudy ARGUMENTS` to its end (at most `timeout` seconds); its exit status and output.
public func runUnderstudy(_ arguments: [String], timeout: Double = 60) async throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try understudyExecutable())
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    // Read while it runs: a full pipe would stop it.
    let reader = Task.detached { pipe.fileHandleForReading.readDataToEndOfFile() }
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning, Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw ServeProcessError("understudy \(arguments.joined(separator: " ")) did not exit within \(timeout) s")
    }
    return (process.terminationStatus, String(decoding: await reader.value, as: UTF8.self))
}

/// `understudy …` running as a child process whose output (stdout and stderr) is collected.
public class UnderstudyProcess: @unchecked Sendable {
    public let process = Process()
    private let lock = NSLock()
    private var collected = ""

    /// What it has printed so far.
    public var output: String { lock.withLock { collected } }

    /// Starts `understudy ARGUMENTS`.
    public init(_ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: try understudyExecutable())
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock { self.collected += String(decoding: data, as: UTF8.self) }
        }
        try process.run()
    }

    /// Waits up to `timeout` seconds until the output holds a whole line that `matches`; that line.
    public func waitForLine(within timeout: Double, where matches: (Substring) -> Bool) async throws -> Substring? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let text = output
            let whole = text[..<(text.lastIndex(of: "\n") ?? text.startIndex)]
            if let line = whole.split(separator: "\n").first(where: matches) { return line }
            guard process.isRunning else { return nil }
            try await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    /// Ends it (SIGTERM, then SIGKILL if it lingers) and waits for it.
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// `understudy serve …` run as a user runs it; `start` returns once it prints the address it
/// listens on.
public final class ServeProcess: UnderstudyProcess, @unchecked Sendable {
    /// `http://127.0.0.1:PORT` once listening.
    public private(set) var base = ""

    /// Starts `understudy serve ARGUMENTS` (with `--port 0 --host 127.0.0.1` appended unless the
    /// arguments name them) and waits up to `timeout` seconds for its listening line.
    public static func start(_ arguments: [String], environment: [String: String] = [:], timeout: Double = 60) async throws -> ServeProcess {
        var arguments = ["serve"] + arguments
        if !arguments.contains("--port") { arguments += ["--port", "0"] }
        if !arguments.contains("--host") { arguments += ["--host", "127.0.0.1"] }
        let server = try ServeProcess(arguments, environment: environment)
        let listening = try await server.waitForLine(within: timeout) { $0.contains("listening on http://") }
        if let rest = listening.flatMap({ $0.range(of: "listening on http://").map { $0.upperBound } }).map({ listening![$0...] }),
           let port = rest.split(separator: ":").last, Int(port) != nil {
            server.base = "http://127.0.0.1:\(port)"
            return server
        }
        let text = server.output
        server.stop()
        throw ServeProcessError("understudy \(arguments.joined(separator: " ")) printed no listening line within \(timeout) s (exit status \(server.process.isRunning ? "none" : "\(server.process.terminationStatus)")):\n\(text)")
    }

    /// Runs `understudy serve ARGUMENTS` expecting it to exit on its own (a refusal); returns its
    /// exit status and output.
    public static func runToExit(_ arguments: [String], timeout: Double = 60) async throws -> (status: Int32, output: String) {
        try await runUnderstudy(["serve"] + arguments, timeout: timeout)
    }
}

/// A `understudy serve` child that did not start as expected.
public struct ServeProcessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
