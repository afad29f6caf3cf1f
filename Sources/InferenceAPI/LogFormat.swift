import Foundation
import Logging

/// Log lines as the servers Understudy stands in for print them, on standard output: vLLM's
/// (`INFO 12-05 07:15:01 [loggers] message`, its logger's format with the logger's name in
/// place of the source file) and, for loggers labelled `uvicorn…`, uvicorn's (`INFO:     127.0.0.1:52100 - "POST /v1/completions HTTP/1.1" 200 OK`).
public struct ServerLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let output: @Sendable (String) -> Void

    public init(label: String, level: Logger.Level, output: @escaping @Sendable (String) -> Void = ServerLogHandler.standardOutput) {
        self.label = label
        logLevel = level
        self.output = output
    }

    /// The label of the access log. Its lines, and those of every logger labelled `uvicorn…`,
    /// take uvicorn's format.
    public static let accessLabel = "uvicorn.access"

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var text = "\(event.message)"
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        if !merged.isEmpty { text += " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
        let level = Self.name(event.level)
        if label.hasPrefix("uvicorn") {
            // uvicorn pads the level and its colon to ten characters.
            output((level + ":").padding(toLength: 10, withPad: " ", startingAt: 0) + text)
        } else {
            output("\(level) \(Self.timestamp()) [\(label)] \(text)")
        }
    }

    /// Python's level names, as vLLM's and uvicorn's formatters print them.
    static func name(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: "DEBUG"
        case .info, .notice: "INFO"
        case .warning: "WARNING"
        case .error: "ERROR"
        case .critical: "CRITICAL"
        }
    }

    /// vLLM's date format, `%m-%d %H:%M:%S`, in local time.
    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        return String(format: "%02d-%02d %02d:%02d:%02d", parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec)
    }

    /// Whole lines to standard output, flushed: a pipe reader sees each as it happens.
    public static let standardOutput: @Sendable (String) -> Void = { line in
        outputLock.lock()
        defer { outputLock.unlock() }
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    private static let outputLock = NSLock()
}
