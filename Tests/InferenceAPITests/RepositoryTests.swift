import Foundation
import Testing

/// The repository stands alone: nothing a reader or a test follows leads outside the clone.
@Suite struct RepositoryTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Paths that would only resolve beside a checkout of ours (the brief's reference folder, a
    /// sibling of the checkout) or on the machine it was written on. Spelled in parts, so this
    /// file names none of them itself.
    static let sibling = "sh" + "ared"
    static let outside = ["../" + sibling, sibling + "/reference", sibling + "/DESIGN", "/work/" + "main", "/work/" + sibling]

    @Test func noPathLeadsOutsideTheClone() throws {
        var offenders: [String] = []
        let files = ["README.md"] + ["docs", "Sources", "Tests", "scripts", "profiles", "reference", ".ci"].flatMap { directory -> [String] in
            let enumerator = FileManager.default.enumerator(atPath: Self.root.appendingPathComponent(directory).path)
            return (enumerator?.allObjects as? [String] ?? []).map { directory + "/" + $0 }
        }
        #expect(files.count > 100, "the walk found the tree")
        for file in files {
            guard let text = try? String(contentsOf: Self.root.appendingPathComponent(file), encoding: .utf8) else { continue }
            for pattern in Self.outside where text.contains(pattern) { offenders.append("\(file): \(pattern)") }
        }
        #expect(offenders.isEmpty, "\(offenders)")
    }
}
