@testable import FakeVLLM
import Foundation
import Testing

@Suite struct PublishedComparisonTests {
    @Test func csvKeepsQuotedCommasQuotesAndNewlines() {
        let rows = PublishedComparison.parseCSV("a,\"b,\"\"c\"\"\",d\n1,\"x\ny\",3\n")
        #expect(rows == [["a", "b,\"c\"", "d"], ["1", "x\ny", "3"]])
    }

    @Test func readsEveryRowOfThePublishedTable() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/reference/timing/published_serving.csv")
        let text = try String(contentsOf: file, encoding: .utf8)
        let rows = PublishedComparison.parseCSV(text)
        #expect(rows.count == 202)  // the header and 201 published numbers
        #expect(rows.allSatisfy { $0.count == 12 })
    }
}
