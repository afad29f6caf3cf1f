/// Left-aligned columns, two spaces apart, as `kubectl get` prints them.
public enum TextTable {
    public static func lines(_ rows: [[String]], indent: String = "") -> [String] {
        guard let first = rows.first else { return [] }
        let widths = first.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            indent + zip(row.dropLast(), widths).map { $0.0.padding(toLength: $0.1 + 2, withPad: " ", startingAt: 0) }.joined() + (row.last ?? "")
        }
    }
}
