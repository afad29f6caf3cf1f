import Foundation
import InferenceAPI

// MARK: - Validating

extension SchemaSampler {
    /// Checks a value against compiled nodes, following the spec's meaning of each keyword.
    /// A visit budget and a depth cap bound the work on hostile values and nested combinators.
    struct Validator {
        let nodes: [Node]
        var budget = 200_000
        var problems: [String] = []
        /// A node whose own enum/const is not checked at the top of the value: used to filter a
        /// node's enum values by its other keywords without comparing each against all others.
        var skippingChoicesOf: Int?
        static let maxProblems = 20
        static let maxDepth = 600

        init(nodes: [Node]) { self.nodes = nodes }

        /// Whether `value` is valid at node `index`; with `report`, every problem is recorded
        /// (up to a cap), otherwise the first one ends the check.
        mutating func check(_ value: JSONValue, _ index: Int, path: String, report: Bool, depth: Int) -> Bool {
            budget -= 1
            guard budget >= 0, depth <= Self.maxDepth else {
                if report, problems.count < Self.maxProblems { problems.append("\(path): too deeply nested or complex for the emulator to check") }
                return false
            }
            let node = nodes[index]
            var issues: [String] = []
            var childrenValid = true
            if node.isFalse { issues.append("no value is allowed here") }
            if !node.types.contains(Types.of(value)) { issues.append("expected \(node.types.description), got \(value.typeName)") }
            if let choices = node.choices, skippingChoicesOf != index || depth > 0, !choices.contains(where: { SchemaSampler.same($0, value) }) {
                issues.append(choices.count == 1 ? "must equal the schema's const value" : "must be one of the schema's enum values")
            }
            if !report, !issues.isEmpty { return false }
            switch value {
            case .integer, .double: issues += numberIssues(value, node)
            case .string(let text): issues += stringIssues(text, node)
            case .array(let items):
                if items.count < node.minItems { issues.append("has \(items.count) items, fewer than minItems \(node.minItems)") }
                if items.count > node.maxItems { issues.append("has \(items.count) items, more than maxItems \(node.maxItems)") }
                if node.uniqueItems {
                    let (pairs, overflow) = items.count.multipliedReportingOverflow(by: items.count)
                    budget -= overflow ? Int.max / 2 : pairs / 2
                    if budget < 0 {
                        issues.append("too many items for the emulator to check uniqueItems")
                    } else if items.indices.contains(where: { i in items[..<i].contains { SchemaSampler.same($0, items[i]) } }) {
                        issues.append("has duplicate items but uniqueItems is true")
                    }
                }
                if !report, !issues.isEmpty { return false }
                for (position, item) in items.enumerated() {
                    guard let rule = node.itemRule(position) else { continue }
                    if !check(item, rule, path: "\(path)[\(position)]", report: report, depth: depth + 1) {
                        childrenValid = false
                        if !report { return false }
                    }
                }
            case .object(let members):
                for name in node.required where members[name] == nil { issues.append("missing required property '\(name)'") }
                if !report, !issues.isEmpty { return false }
                for member in members {
                    guard let rule = node.propertyRule(member.key) else { continue }
                    if !check(member.value, rule, path: "\(path).\(member.key)", report: report, depth: depth + 1) {
                        childrenValid = false
                        if !report { return false }
                    }
                }
            default: break
            }
            for branch in (node.ref.map { [$0] } ?? []) + node.allOf {
                if !check(value, branch, path: path, report: report, depth: depth + 1) {
                    childrenValid = false
                    if !report { return false }
                }
            }
            if !node.anyOf.isEmpty {
                var matched = false
                for branch in node.anyOf where !matched { matched = check(value, branch, path: path, report: false, depth: depth + 1) }
                if !matched { issues.append("matches none of the anyOf alternatives") }
            }
            if !node.oneOf.isEmpty {
                var matches = 0
                for branch in node.oneOf where matches < 2 {
                    if check(value, branch, path: path, report: false, depth: depth + 1) { matches += 1 }
                }
                if matches != 1 { issues.append(matches == 0 ? "matches none of the oneOf alternatives" : "matches more than one oneOf alternative") }
            }
            if report {
                for issue in issues where problems.count < Self.maxProblems { problems.append("\(path): \(issue)") }
            }
            return childrenValid && issues.isEmpty
        }

        func numberIssues(_ value: JSONValue, _ node: Node) -> [String] {
            let number: Double
            switch value {
            case .integer(let integer): number = Double(integer)
            case .double(let double): number = double
            default: return []
            }
            guard number.isFinite else { return ["must be a finite number"] }
            var issues: [String] = []
            if let bound = node.lower, bound.exclusive ? number <= bound.value : number < bound.value {
                issues.append("must be \(bound.exclusive ? "greater than" : "at least") \(SchemaNumberText.describe(bound.value))")
            }
            if let bound = node.upper, bound.exclusive ? number >= bound.value : number > bound.value {
                issues.append("must be \(bound.exclusive ? "less than" : "at most") \(SchemaNumberText.describe(bound.value))")
            }
            if let step = node.multipleOf, !Self.isMultiple(value, number, of: step) {
                issues.append("must be a multiple of \(SchemaNumberText.describe(step))")
            }
            return issues
        }

        /// Exact for integers; for fractions, within floating-point error (0.07 / 0.01 is not 7).
        static func isMultiple(_ value: JSONValue, _ number: Double, of step: Double) -> Bool {
            if case .integer(let integer) = value, step == step.rounded(), step < 9e18 { return integer % Int(step) == 0 }
            if number == number.rounded(), (1 / step) == (1 / step).rounded() { return true }
            let quotient = number / step
            return quotient.isFinite && abs(quotient - quotient.rounded()) <= 1e-9 * max(1, abs(quotient))
        }

        func stringIssues(_ text: String, _ node: Node) -> [String] {
            var issues: [String] = []
            let length = text.unicodeScalars.count
            if length < node.minLength { issues.append("is \(length) characters long, shorter than minLength \(node.minLength)") }
            if length > node.maxLength { issues.append("is \(length) characters long, longer than maxLength \(node.maxLength)") }
            if let format = node.format, !SchemaSampler.conforms(text, to: format) { issues.append("is not a valid '\(format)'") }
            if let matcher = node.matcher, matcher.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) == nil {
                issues.append("does not match pattern '\(matcher.pattern)'")
            }
            return issues
        }
    }
}

/// Number spelling for messages: integral values without a fraction.
enum SchemaNumberText {
    static func describe(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }
}
