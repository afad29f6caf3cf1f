import Foundation

/// Waits for `condition` to hold, checking every 20 ms for at most `seconds`: tests wait on what
/// they expect, never for a fixed time. Whether it came to hold. The limit is generous because
/// it costs a passing test nothing, and on two shared cores the suite's CPU-bound tests can hold
/// every thread for several seconds while a live test waits.
public func eventually(within seconds: Double = 30, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}
