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

/// `understudy serve …` run as a user runs it: a child process whose output is collected; `start`
/// returns once it prints the address it listens on.
public final class ServeProcess: @unchecked Sendable {
    public let process = Process()
    private let lock = NSLock()
    private var collected = ""
    /// `http://127.0.0.1:PORT` once listening.
    public private(set) var base = ""

    /// What the server has printed so far (stdout and stderr).
    public var output: String { lock.withLock { collected } }

    /// Starts `understudy serve ARGUMENTS` (with `--port 0 --host 127.0.0.1` appended unless the
    /// arguments name them) and waits up to `timeout` seconds for its listening line.
    public static func start(_ arguments: [String], environment: [String: String] = [:], timeout: Double = 60) async throws -> ServeProcess {
        let server = ServeProcess()
        server.process.executableURL = URL(fileURLWithPath: try understudyExecutable())
        var arguments = ["serve"] + arguments
        if !arguments.contains("--port") { arguments += ["--port", "0"] }
        if !arguments.contains("--host") { arguments += ["--host", "127.0.0.1"] }
        server.process.arguments = arguments
        server.process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        server.process.standardOutput = pipe
        server.process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak server] handle in
            let data = handle.availableData
            guard let server, !data.isEmpty else { return }
            server.lock.withLock { server.collected += String(decoding: data, as: UTF8.self) }
        }
        try server.process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let text = server.output
            if let range = text.range(of: "listening on http://") {
                let rest = text[range.upperBound...].prefix { $0 != "\n" }
                if let port = rest.split(separator: ":").last, rest.hasSuffix(port), Int(port) != nil {
                    server.base = "http://127.0.0.1:\(port)"
                    return server
                }
            }
            if !server.process.isRunning {
                throw ServeProcessError("understudy \(arguments.joined(separator: " ")) exited \(server.process.terminationStatus):\n\(text)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        server.stop()
        throw ServeProcessError("understudy serve printed no listening line within \(timeout) s:\n\(server.output)")
    }

    /// Runs `understudy serve ARGUMENTS` expecting it to exit on its own (a refusal); returns its
    /// exit status and output.
    public static func runToExit(_ arguments: [String], timeout: Double = 60) async throws -> (status: Int32, output: String) {
        try await runUnderstudy(["serve"] + arguments, timeout: timeout)
    }

    /// Ends the server (SIGTERM, then SIGKILL if it lingers) and waits for it.
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

/// A `understudy serve` child that did not start as expected.
public struct ServeProcessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
