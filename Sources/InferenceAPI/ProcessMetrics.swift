import Foundation
import NIOCore
import Synchronization

/// The `process_*` families Python's prometheus_client exports for the process it runs in (its
/// ProcessCollector), which vLLM's /metrics carries ahead of its own: memory, CPU time, start
/// time and file descriptors, read from /proc as that collector reads them. Pods in one process
/// share its memory, CPU and descriptors; each reports its own start time.
public enum ProcessMetrics {
    /// One reading of /proc/self.
    public struct Reading: Sendable, Equatable {
        public var virtualMemoryBytes: Double
        public var residentMemoryBytes: Double
        public var cpuSeconds: Double
        public var openFileDescriptors: Double
        public var maxFileDescriptors: Double
    }

    /// Readings are kept for a second: /proc/self/fd holds an entry per connection, and a
    /// fleet's pods are scraped many times a second.
    private static let cache = Mutex<(reading: Reading, at: Double)?>(nil)

    /// The current reading, at most a second old; nil where /proc is not there.
    public static func current(now: Double = Date().timeIntervalSince1970) -> Reading? {
        if let cached = cache.withLock({ $0 }), now - cached.at < 1, now >= cached.at { return cached.reading }
        guard let reading = read() else { return nil }
        cache.withLock { $0 = (reading, now) }
        return reading
    }

    /// The families as prometheus_client writes them (its help texts, Python's number format).
    public static func write(_ reading: Reading, startTime: Double, to buffer: inout ByteBuffer) {
        func family(_ name: String, _ help: String, _ type: String, _ value: Double) {
            buffer.writeString("# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(Prometheus.format(value))\n")
        }
        family("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", reading.virtualMemoryBytes)
        family("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", reading.residentMemoryBytes)
        family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge", startTime)
        family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", reading.cpuSeconds)
        family("process_open_fds", "Number of open file descriptors.", "gauge", reading.openFileDescriptors)
        family("process_max_fds", "Maximum number of open file descriptors.", "gauge", reading.maxFileDescriptors)
    }

    /// /proc/self/stat's vsize, rss, utime and stime; the entries of /proc/self/fd; the soft
    /// limit on open files.
    static func read() -> Reading? {
        // No /proc (not Linux): the process families are left out, as prometheus_client does.
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command name, which may itself hold spaces: state is field 3.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        func field(_ number: Int) -> Double? { number - 3 < fields.count ? Double(fields[number - 3]) : nil }
        guard let utime = field(14), let stime = field(15), let vsize = field(23), let rss = field(24) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        // With /proc there, this fails only when no descriptor is left to list with: the other
        // readings are still worth a scrape.
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return Reading(
            virtualMemoryBytes: vsize, residentMemoryBytes: rss * pageSize, cpuSeconds: (utime + stime) / max(ticks, 1),
            openFileDescriptors: Double(descriptors), maxFileDescriptors: Double(OpenFileLimit.current.soft))
    }
}
