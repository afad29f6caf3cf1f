import ArgumentParser
import InferenceAPI
import Logging

/// `--log-level`, and the process's logging set up from it: the servers' lines on standard
/// output in the formats of the servers they stand in for (`ServerLogHandler`).
struct LogOptions: ParsableArguments {
    @Option(help: "Least severe log lines shown: trace, debug, info, notice, warning, error, critical.") var logLevel = "info"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level: one of trace, debug, info, notice, warning, error, critical; got \(logLevel)")
        }
    }

    /// The least severe level shown.
    var level: Logger.Level { Logger.Level(rawValue: logLevel) ?? .info }

    /// Sets up the process's logging (once per process, as swift-log allows).
    func bootstrap() {
        let level = self.level
        LoggingSystem.bootstrap { label in ServerLogHandler(label: label, level: level) }
    }
}
