import Foundation

/// Requests as a service really received them: when each arrived and how many prompt and
/// output tokens it had. Replayed with the recorded gaps (or scaled ones), so a benchmark sees
/// the trace's real burstiness and its real joint spread of lengths.
public struct RequestTrace: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// Seconds after the trace's first request.
        public var time: Double
        /// Prompt tokens as the service counted them.
        public var inputTokens: Int
        public var outputTokens: Int
    }

    public var name: String
    /// In arrival order; the first at time 0.
    public private(set) var entries: [Entry]

    /// Lengths beyond this are refused when reading a trace: a prompt becomes that many tokens in
    /// memory, and no model takes more.
    public static let maximumTokens = 1 << 20

    /// Reads a trace in the Azure LLM inference format (Azure/AzurePublicDataset,
    /// `AzureLLMInferenceTrace_{conv,code}.csv`): a header `TIMESTAMP,ContextTokens,GeneratedTokens`,
    /// then one request a line, `2023-11-16 18:15:46.6805900,374,44`.
    public static func azure(_ text: String, name: String) throws(WorkloadError) -> RequestTrace {
        var entries: [Entry] = []
        // By lines of either ending: the published files end theirs with CRLF, one Character in Swift.
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).makeIterator()
        guard let header = lines.next(), header.trimmingCharacters(in: .whitespacesAndNewlines) == "TIMESTAMP,ContextTokens,GeneratedTokens" else {
            throw WorkloadError("\(name): not an Azure LLM inference trace (its first line is not TIMESTAMP,ContextTokens,GeneratedTokens)")
        }
        var lineNumber = 1
        for line in lines {
            lineNumber += 1
            let fields = line.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",", omittingEmptySubsequences: false)
            if fields.count == 1, fields[0].isEmpty { continue }
            guard fields.count == 3, let seconds = Self.seconds(fields[0]),
                  let input = Int(fields[1]), let output = Int(fields[2]),
                  (1...maximumTokens).contains(input), (1...maximumTokens).contains(output) else {
                throw WorkloadError("\(name) line \(lineNumber): expected TIMESTAMP,ContextTokens,GeneratedTokens with 1…\(maximumTokens) tokens, got \(line.prefix(120))")
            }
            entries.append(Entry(time: seconds, inputTokens: input, outputTokens: output))
        }
        guard let start = entries.map(\.time).min() else { throw WorkloadError("\(name): the trace has no requests") }
        // Times from the earliest request: a trace need not be in order.
        for index in entries.indices { entries[index].time -= start }
        // Sorted, stably: a trace may list two requests of the same instant in either order.
        return RequestTrace(name: name, entries: entries.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element))
    }

    /// The trace with every time multiplied by `factor` (0.5: the same requests in half the
    /// time, at twice the rate).
    public func timeScaled(by factor: Double) -> RequestTrace {
        var scaled = self
        for index in scaled.entries.indices { scaled.entries[index].time *= factor }
        return scaled
    }

    /// Seconds from the first request to the last.
    public var span: Double { entries.last?.time ?? 0 }

    /// The requests arriving within [0, duration).
    public func entries(before duration: Double) -> ArraySlice<Entry> {
        entries[..<(entries.firstIndex { $0.time >= duration } ?? entries.endIndex)]
    }

    /// `2023-11-16 18:15:46.6805900` as seconds since 1970 (UTC; the trace's zone does not
    /// matter, only the gaps do).
    static func seconds(_ stamp: Substring) -> Double? {
        let parts = stamp.split(separator: " ")
        guard parts.count == 2 else { return nil }
        let date = parts[0].split(separator: "-").map { Int($0) }
        let time = parts[1].split(separator: ":")
        guard date.count == 3, let year = date[0], let month = date[1], let day = date[2],
              (1970...9999).contains(year), (1...12).contains(month), (1...31).contains(day), time.count == 3,
              let hour = Int(time[0]), let minute = Int(time[1]), let second = Double(time[2]),
              (0..<24).contains(hour), (0..<60).contains(minute), second >= 0, second < 61 else { return nil }
        return Double(daysSince1970(year: year, month: month, day: day)) * 86_400 + Double(hour * 3_600 + minute * 60) + second
    }

    /// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
    private static func daysSince1970(year: Int, month: Int, day: Int) -> Int {
        // March-based years put the leap day last (the usual civil-date arithmetic).
        let y = month <= 2 ? year - 1 : year
        let era = y / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
