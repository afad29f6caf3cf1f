import Foundation
import InferenceAPI

/// A tool a test needs is not installed.
public struct MissingTool: Error, CustomStringConvertible {
    public let name: String
    public var description: String { "\(name) is not installed; `bash .ci/run` installs it (see README)" }
}

/// Where `name` is on PATH; throws `MissingTool` when it is not.
public func toolPath(_ name: String) throws -> String {
    guard let path = ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":")
        .map({ "\($0)/\(name)" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw MissingTool(name: name)
    }
    return path
}

/// A loopback TCP port free now, for a tool that cannot be told to pick one itself.
public func freeLoopbackPort() throws -> Int {
    guard let port = LoopbackPort.free() else { throw MissingTool(name: "a free loopback port") }
    return port
}

/// Runs an external tool (promtool, python3 …) and returns its exit status and combined output;
/// throws `MissingTool` when it is not on PATH, so the test fails saying what to install.
public func runTool(_ name: String, _ arguments: [String], input: String? = nil) throws -> (status: Int32, output: String) {
    let path = try toolPath(name)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    let stdin = Pipe()
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try stdin.fileHandleForWriting.close()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Runs `Tests/python/openai_sdk_check.py` (the official OpenAI Python SDK) against `base`
/// (`http://host:port/v1`); returns its exit status and output.
public func runOpenAISDKCheck(base: String, caCertificate: String? = nil, apiKey: String? = nil) async throws -> (status: Int32, output: String) {
    let probe = try runTool("python3", ["-c", "import openai, jsonschema"])
    guard probe.status == 0 else { throw MissingTool(name: "the OpenAI Python SDK and jsonschema (pip install openai jsonschema)") }
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("python/openai_sdk_check.py").path
    let options = (caCertificate.map { ["--ca", $0] } ?? []) + (apiKey.map { ["--api-key", $0] } ?? [])
    return try await Task.detached { try runTool("python3", [script, base] + options) }.value
}

/// A self-signed certificate for 127.0.0.1 and localhost, made by openssl in a new temporary
/// directory: (certificate, key) paths, PEM.
public func makeSelfSignedCertificate() throws -> (certificate: String, key: String) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-tls-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let certificate = directory.appendingPathComponent("cert.pem").path
    let key = directory.appendingPathComponent("key.pem").path
    let result = try runTool("openssl", [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ])
    guard result.status == 0 else { throw MissingTool(name: "a working openssl (it said: \(result.output))") }
    return (certificate, key)
}

/// `promtool check metrics` on an exposition: the findings other than `allowed` lint messages
/// (exit 1 means the text did not parse, which is reported as a finding too).
public func promtoolFindings(_ exposition: String, allowed: (Substring) -> Bool = { _ in false }) throws -> [String] {
    let result = try runTool("promtool", ["check", "metrics"], input: exposition)
    if result.status != 0 && result.status != 3 { return ["promtool exited \(result.status): \(result.output)"] }
    return result.output.split(separator: "\n").filter { !$0.isEmpty && !allowed($0) }.map(String.init)
}
