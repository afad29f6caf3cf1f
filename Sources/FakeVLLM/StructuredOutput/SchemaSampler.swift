import Foundation
import InferenceAPI

/// A structured-output constraint the emulator cannot honour, or that no value satisfies. The
/// message goes to the API client in a 400, so it names the keyword or construct at fault.
public struct StructuredOutputError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Draws JSON values valid against a JSON Schema, for `response_format` (`json_schema`,
/// `json_object`), `structured_outputs.json` and tool-call arguments. The schema is checked once
/// at init: what the sampler cannot guarantee is refused there (or, when it touches only one
/// type, such as a pattern it cannot sample in `anyOf [number, string]`, that type is never
/// drawn), so `sample` never fails and never produces an invalid value. `validate` checks any
/// value against the same supported subset.
///
/// Compilation keeps each schema object as a `Node` with its combinators (`$ref`, `allOf`, `anyOf`,
/// `oneOf`), which is what validation follows; sampling uses per-node `Alternative`s, the
/// combinators multiplied out into flat constraint sets, so a draw is built directly. Only draws
/// that construction cannot promise (oneOf's "exactly one", a pattern with length limits) are
/// validated, with a value found at init as the fallback.
public struct SchemaSampler: Sendable {
    static let maxDepth = 64
    static let maxNodes = 4_096
    static let maxAlternatives = 64
    static let maxMinLength = 10_000
    static let maxMinItems = 256
    /// Largest smallest-instance (in JSON values) a schema may demand.
    static let maxCost = 1_000
    /// Past this nesting, or once a draw has made `valueBudget` values, sampling takes the cheapest
    /// finite path (no optional properties, fewest items, the terminating branch of a recursion).
    static let minimalDepth = 8
    static let valueBudget = 256
    /// Deepest smallest instance allowed, so that drawing and validating stay far from the stack's end.
    static let maxMinimalNesting = 128
    static let infinite = Int.max / 4

    let nodes: [Node]
    let alternatives: [[Alternative]]
    /// Each node's (alternative, kind) choices with their smallest cost, cheapest first; empty
    /// for a node no draw can satisfy.
    private(set) var options: [[Option]] = []
    /// Nodes whose draws are checked by the validator (oneOf, pattern with length, …); when a few
    /// draws fail, the value found at init stands in.
    let checked: Set<Int>
    var witnesses: [Int: JSONValue] = [:]

    public init(schema: JSONValue) throws(StructuredOutputError) {
        var compiler = SchemaCompiler(root: schema)
        try compiler.compileDocument()
        try compiler.flattenAll()
        nodes = compiler.nodes
        var alternatives: [[Alternative]] = []
        var checked = Set<Int>()
        for index in nodes.indices {
            let flat = compiler.plans[index] ?? []
            alternatives.append(flat.map { Alternative(node: $0, kinds: Self.kinds(of: $0, nodes: compiler.nodes)) }.filter { !$0.kinds.isEmpty })
            if compiler.involvesOneOf[index] == true || flat.contains(where: Self.needsCheck) { checked.insert(index) }
        }
        self.alternatives = alternatives
        self.checked = checked
        options = Self.options(nodes: nodes, alternatives: alternatives, undrawable: [])
        // A checked node no draw satisfies becomes undrawable and costs are worked out again, so
        // an optional member with an impossible oneOf is left out rather than the schema refused.
        var undrawable = Set<Int>()
        var failure: String?
        while true {
            guard let rootCost = options[0].first?.cost else {
                throw StructuredOutputError(
                    failure ?? "JSON schema allows no value the emulator can generate"
                        + (compiler.blockReasons.first.map { ": " + $0 } ?? " (contradictory keywords or endless recursion)"))
            }
            guard rootCost <= Self.maxCost else {
                throw StructuredOutputError("JSON schema requires values larger than the emulator's limit of \(Self.maxCost) JSON values")
            }
            guard Self.deepestMinimalInstance(options: options, alternatives: alternatives) <= Self.maxMinimalNesting else {
                throw StructuredOutputError("JSON schema requires values nested deeper than the emulator's limit of \(Self.maxMinimalNesting) levels")
            }
            guard let failed = findWitnesses() else { break }
            failure = failure ?? "JSON schema at \(nodes[failed].path): the emulator found no value satisfying all of its keywords together "
                + "(oneOf must match exactly one branch; pattern, format, length and uniqueItems must all hold)"
            undrawable.insert(failed)
            options = Self.options(nodes: nodes, alternatives: alternatives, undrawable: undrawable)
        }
    }

    /// A value valid against the schema; the same generator state gives the same value.
    public func sample(using generator: inout SplitMix64) -> JSONValue {
        var remaining = Self.valueBudget
        return draw(0, depth: 0, generator: &generator, remaining: &remaining)
    }

    /// What makes `value` invalid against the schema, one line per problem (empty when valid).
    public func validate(_ value: JSONValue) -> [String] {
        var validator = Validator(nodes: nodes)
        _ = validator.check(value, 0, path: "$", report: true, depth: 0)
        return validator.problems
    }
}

// MARK: - Model

extension SchemaSampler {
    /// The JSON types a schema allows. `number` includes integers, as in JSON Schema, so a
    /// schema's "number" is `[.number, .integer]` and intersections come out right.
    struct Types: OptionSet, Sendable {
        let rawValue: UInt8
        static let null = Types(rawValue: 1), boolean = Types(rawValue: 2), integer = Types(rawValue: 4)
        static let number = Types(rawValue: 8), string = Types(rawValue: 16), array = Types(rawValue: 32)
        static let object = Types(rawValue: 64)
        static let all: Types = [.null, .boolean, .integer, .number, .string, .array, .object]
        static let names: [(String, Types)] = [
            ("null", .null), ("boolean", .boolean), ("integer", .integer), ("number", [.number, .integer]),
            ("string", .string), ("array", .array), ("object", .object),
        ]

        /// The kind of an instance: an integral number (2 or 2.0) is an integer.
        static func of(_ value: JSONValue) -> Types {
            switch value {
            case .null: .null
            case .bool: .boolean
            case .integer: .integer
            case .double(let number): number.isFinite && number == number.rounded() ? .integer : .number
            case .string: .string
            case .array: .array
            case .object: .object
            }
        }

        var description: String {
            if isEmpty { return "nothing (an empty 'type' list)" }
            return Self.names.filter { isSuperset(of: $0.1) && ($0.0 != "integer" || !contains(.number)) }.map(\.0).joined(separator: " or ")
        }
    }

    /// A numeric bound; `exclusive` for exclusiveMinimum/exclusiveMaximum.
    struct Bound: Sendable {
        var value: Double
        var exclusive: Bool
    }

    /// One compiled schema object (or boolean schema). Child schemas are indices into `nodes`;
    /// `nil` for `items`/`additionalProperties` means "anything".
    struct Node: Sendable {
        var path: String
        var isFalse = false
        var types = Types.all
        /// Types the keywords present point to, for schemas without `type` (`{"properties": …}`).
        var keywordTypes: Types = []
        var choices: [JSONValue]?
        var lower: Bound?
        var upper: Bound?
        var multipleOf: Double?
        var minLength = 0
        var maxLength = Int.max
        var format: String?
        var pattern: RegexSampler?
        /// The pattern for validation (ICU), present even when the sampler cannot draw from it.
        var matcher: NSRegularExpression?
        /// Types the sampler must not draw here (a string pattern it cannot sample, conflicting
        /// allOf formats): only those types are lost, so `anyOf [number, string-with-lookahead]`
        /// (Pydantic's Decimal) still works.
        var blockedTypes: Types = []
        var prefixItems: [Int] = []
        var items: Int?
        var minItems = 0
        var maxItems = Int.max
        var uniqueItems = false
        var properties: [(name: String, node: Int)] = []
        var propertyIndex: [String: Int] = [:]
        /// `properties` is present (even empty): a tool without parameters gets `{}`, while a
        /// bare `{"type": "object"}` (json_object mode) gets a plausible one-member object.
        var declaresProperties = false
        var required: [String] = []
        var additional: Int?
        var ref: Int?
        var allOf: [Int] = []
        var anyOf: [Int] = []
        var oneOf: [Int] = []

        init(path: String) { self.path = path }

        /// The schema for array position `position`.
        func itemRule(_ position: Int) -> Int? { position < prefixItems.count ? prefixItems[position] : items }
        /// The schema for member `name`.
        func propertyRule(_ name: String) -> Int? { propertyIndex[name] ?? additional }
    }

    /// What one draw of an alternative produces; numeric ranges are worked out at init.
    enum Kind: Sendable {
        case null, boolean, string, array, object, choice
        /// Nothing constrains the value: a plausible object at the top, a short phrase inside.
        case anything
        /// `step × k` for k in kLow...kHigh.
        case integer(kLow: Int, kHigh: Int, step: Int)
        case number(low: Double, high: Double)
        case numberStep(kLow: Double, kHigh: Double, step: Double)
    }

    /// A flat constraint set (no combinators) and what it can produce.
    struct Alternative: Sendable {
        var node: Node
        var kinds: [Kind]
        var required: Set<String>
        init(node: Node, kinds: [Kind]) {
            self.node = node
            self.kinds = kinds
            required = Set(node.required)
        }
    }

    struct Option: Sendable {
        var alternative: Int
        var kind: Int
        var cost: Int
    }

    /// Mathematical JSON equality (1 equals 1.0; object member order is irrelevant), as `enum`,
    /// `const` and `uniqueItems` compare.
    static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.integer(let x), .double(let y)), (.double(let y), .integer(let x)): return Double(x) == y
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case (.object(let x), .object(let y)):
            return x.count == y.count && x.allSatisfy { member in y[member.key].map { same(member.value, $0) } ?? false }
        default: return a == b
        }
    }
}
