import Foundation
@testable import Load
import Testing

/// Replaying a recorded trace: its requests at their recorded times, with their lengths.
struct RequestTraceTests {
    static let text = """
        TIMESTAMP,ContextTokens,GeneratedTokens
        2023-11-16 23:59:59.5000000,374,44
        2023-11-17 00:00:00.2500000,396,109
        2023-11-16 23:59:59.7500000,91,16
        2023-11-17 00:00:02.0000000,879,55

        """

    @Test func aTraceKeepsItsGapsAcrossMidnightInArrivalOrder() throws {
        let trace = try RequestTrace.azure(Self.text, name: "t")
        #expect(trace.entries.map(\.time) == [0, 0.25, 0.75, 2.5])
        #expect(trace.entries.map(\.inputTokens) == [374, 91, 396, 879])
        #expect(trace.entries.map(\.outputTokens) == [44, 16, 109, 55])
        #expect(trace.span == 2.5)
        #expect(trace.timeScaled(by: 0.5).entries.map(\.time) == [0, 0.125, 0.375, 1.25])
        #expect(trace.entries(before: 0.75).map(\.inputTokens) == [374, 91])
        // Times count from the earliest request, wherever its line is.
        let unordered = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:47,5,5\n2023-11-16 18:15:46,6,6\n"
        #expect(try RequestTrace.azure(unordered, name: "t").entries.map(\.time) == [0, 1])
        // As published: lines end with CRLF.
        #expect(try RequestTrace.azure(Self.text.replacingOccurrences(of: "\n", with: "\r\n"), name: "t") == trace)
    }

    @Test(arguments: [
        ("", "not an Azure LLM inference trace"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "has no requests"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374\n", "line 2"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,0\n", "line 2"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,99999999999,4\n", "line 2"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,1\n2023-13-16 18:15:46,1,1\n", "line 3"),
    ])
    func whatIsNotATraceIsRefusedWithWhere(text: String, expected: String) {
        #expect {
            _ = try RequestTrace.azure(text, name: "t")
        } throws: { error in
            "\(error)".contains(expected)
        }
    }

    @Test func aPlanSendsTheTracesRequestsAtItsTimesWithItsLengths() throws {
        let trace = try RequestTrace.azure(Self.text, name: "t").timeScaled(by: 2)
        let plan = BenchPlan(workload: Workload(source: .trace(trace), models: [("m", 1)], seed: 3), rates: [1], duration: 5, streaming: false)
        #expect(plan.arrivals(stage: 0) == [0, 0.5, 1.5])
        #expect(plan.workload.datasetName == "t")
        for (index, entry) in trace.entries.prefix(3).enumerated() {
            let item = plan.item(stage: 0, index: index)
            #expect(item.inputTokens == entry.inputTokens)
            #expect(item.outputTokens == entry.outputTokens)
        }
    }
}
