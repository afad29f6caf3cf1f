import Foundation
import InferenceAPI

// MARK: - Compiling

/// Turns a schema document into `Node`s (references compiled once each, from a work list, so
/// chains of `$ref` never deepen the recursion), then multiplies combinators out into each node's
/// flat alternatives.
struct SchemaCompiler {
    typealias Node = SchemaSampler.Node
    typealias Types = SchemaSampler.Types
    let root: JSONValue
    var nodes: [Node] = []
    var references: [String: Int] = ["#": 0]
    var pending: [(pointer: String, index: Int)] = []
    var plans: [Int: [Node]] = [:]
    var involvesOneOf: [Int: Bool] = [:]
    var flattening: Set<Int> = []
    var conjunctions: [Int: Int] = [:]
    var anything: Int?
    /// Why types were blocked, for the message when nothing is left to draw.
    var blockReasons: [String] = []

    /// Assertions the sampler cannot guarantee (or the validator check); refused wherever they appear.
    static let refused: Set<String> = [
        "not", "if", "then", "else", "patternProperties", "dependentSchemas", "dependentRequired", "dependencies",
        "propertyNames", "contains", "minContains", "maxContains", "unevaluatedProperties", "unevaluatedItems",
        "minProperties", "maxProperties", "$dynamicRef", "$recursiveRef",
    ]
    static let keywordTypes: [(Types, [String])] = [
        (.object, ["properties", "required", "additionalProperties"]),
        (.array, ["items", "prefixItems", "minItems", "maxItems", "uniqueItems"]),
        (.string, ["minLength", "maxLength", "pattern", "format"]),
        ([.number, .integer], ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"]),
    ]

    init(root: JSONValue) { self.root = root }

    mutating func block(_ node: inout Node, _ types: Types, because reason: String) {
        node.blockedTypes.formUnion(types)
        if blockReasons.count < 4 { blockReasons.append(reason) }
    }

    func fail(_ path: String, _ what: String) -> StructuredOutputError {
        StructuredOutputError("JSON schema at \(path): \(what)")
    }

    mutating func compileDocument() throws(StructuredOutputError) {
        _ = try subschema(root, path: "#", depth: 0)
        while let (pointer, index) = pending.popLast() {
            let node = try build(try resolve(pointer), path: pointer, depth: 0)
            nodes[index] = node
        }
    }

    mutating func append(_ node: Node) throws(StructuredOutputError) -> Int {
        guard nodes.count < SchemaSampler.maxNodes else {
            throw StructuredOutputError("JSON schema has more than \(SchemaSampler.maxNodes) subschemas, the emulator's limit")
        }
        nodes.append(node)
        return nodes.count - 1
    }

    mutating func subschema(_ value: JSONValue, path: String, depth: Int) throws(StructuredOutputError) -> Int {
        guard depth <= SchemaSampler.maxDepth else {
            throw StructuredOutputError("JSON schema nests deeper than \(SchemaSampler.maxDepth) levels, the emulator's limit")
        }
        let index = try append(Node(path: path))
        let node = try build(value, path: path, depth: depth)
        nodes[index] = node
        return index
    }

    /// `items`/`additionalProperties`: `true` (or absent) is nil, "anything".
    mutating func optionalSubschema(_ value: JSONValue?, path: String, depth: Int) throws(StructuredOutputError) -> Int? {
        guard let value, value != .bool(true) else { return nil }
        return try subschema(value, path: path, depth: depth)
    }

    mutating func subschemas(_ value: JSONValue, key: String, path: String, depth: Int) throws(StructuredOutputError) -> [Int] {
        guard case .array(let list) = value, !list.isEmpty else { throw fail(path, "'\(key)' must be a non-empty array of schemas") }
        var indices: [Int] = []
        for (position, item) in list.enumerated() { indices.append(try subschema(item, path: "\(path)/\(key)/\(position)", depth: depth + 1)) }
        return indices
    }

    mutating func reference(_ pointer: String) throws(StructuredOutputError) -> Int {
        if let index = references[pointer] { return index }
        guard pointer.hasPrefix("#") else {
            throw StructuredOutputError("JSON schema $ref '\(pointer)' points outside the document; only local references such as '#/$defs/Name' are supported")
        }
        guard pointer.hasPrefix("#/") else {
            throw StructuredOutputError("JSON schema $ref '\(pointer)' names an anchor; only JSON pointers such as '#/$defs/Name' are supported")
        }
        let index = try append(Node(path: pointer))
        references[pointer] = index
        pending.append((pointer, index))
        return index
    }

    /// The value a local JSON pointer (`#/$defs/Name`, with `~0`, `~1` and %-escapes) names.
    func resolve(_ pointer: String) throws(StructuredOutputError) -> JSONValue {
        var current = root
        for raw in pointer.dropFirst().split(separator: "/", omittingEmptySubsequences: false).dropFirst() {
            let token = (String(raw).removingPercentEncoding ?? String(raw))
                .replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            if case .object(let members) = current, let next = members[token] {
                current = next
            } else if case .array(let items) = current, let position = Int(token), items.indices.contains(position) {
                current = items[position]
            } else {
                throw StructuredOutputError("JSON schema $ref '\(pointer)' does not point to anything in the document")
            }
        }
        return current
    }

    func number(_ schema: JSONObject, _ key: String, _ path: String) throws(StructuredOutputError) -> Double? {
        switch schema[key] {
        case nil: return nil
        case .integer(let value)?: return Double(value)
        case .double(let value)? where value.isFinite: return value
        default: throw fail(path, "'\(key)' must be a finite number")
        }
    }

    func count(_ schema: JSONObject, _ key: String, _ path: String) throws(StructuredOutputError) -> Int? {
        switch schema[key] {
        case nil: return nil
        case .integer(let value)? where value >= 0: return value
        case .double(let value)? where value >= 0 && value.isFinite && value == value.rounded():
            return value >= 9.2e18 ? Int.max : Int(value)
        default: throw fail(path, "'\(key)' must be a non-negative integer")
        }
    }

    /// A `minX`/`maxX` pair (lengths, item counts): consistent, and a minimum the sampler can draw.
    func countRange(
        _ schema: JSONObject, _ minKey: String, _ maxKey: String, _ path: String, limit: Int, noun: String
    ) throws(StructuredOutputError) -> (Int, Int) {
        let lower = try count(schema, minKey, path) ?? 0
        let upper = try count(schema, maxKey, path) ?? Int.max
        guard lower <= upper else {
            throw fail(path, "\(minKey) \(lower) is greater than \(maxKey) \(upper), so no \(noun) is valid")
        }
        guard lower <= limit else {
            throw fail(path, "\(minKey) \(lower) is above the emulator's limit of \(limit)")
        }
        return (lower, upper)
    }

    static func tighter(_ a: SchemaSampler.Bound?, _ b: SchemaSampler.Bound?, lower: Bool) -> SchemaSampler.Bound? {
        guard let a else { return b }
        guard let b else { return a }
        if a.value == b.value { return .init(value: a.value, exclusive: a.exclusive || b.exclusive) }
        return (lower ? a.value > b.value : a.value < b.value) ? a : b
    }

    mutating func build(_ value: JSONValue, path: String, depth: Int) throws(StructuredOutputError) -> Node {
        var node = Node(path: path)
        guard case .object(let schema) = value else {
            if case .bool(let flag) = value {
                node.isFalse = !flag
                return node
            }
            throw fail(path, "a schema must be an object or a boolean, not \(value.typeName)")
        }
        for member in schema where Self.refused.contains(member.key) {
            throw StructuredOutputError("JSON schema keyword '\(member.key)' is not supported by the emulator")
        }
        for (types, keys) in Self.keywordTypes where keys.contains(where: { schema[$0] != nil }) { node.keywordTypes.formUnion(types) }
        if let type = schema["type"] {
            node.types = []
            for name in type.array ?? [type] {
                guard let text = name.string, let types = Types.names.first(where: { $0.0 == text })?.1 else {
                    throw fail(path, "'type' must be a JSON type name or a list of them")
                }
                node.types.formUnion(types)
            }
            if schema["nullable"] == .bool(true) { node.types.insert(.null) }  // OpenAPI's spelling
        }
        if let list = schema["enum"] {
            guard let values = list.array, !values.isEmpty else { throw fail(path, "'enum' must be a non-empty array") }
            node.choices = values
        }
        if let constant = schema["const"] {
            node.choices = (node.choices ?? [constant]).filter { SchemaSampler.same($0, constant) }
            if node.choices?.isEmpty == true { throw fail(path, "'const' is not among the 'enum' values, so no value is valid") }
        }
        // Numbers. Draft 4's boolean exclusiveMinimum/Maximum modify minimum/maximum.
        node.lower = try number(schema, "minimum", path).map { .init(value: $0, exclusive: schema["exclusiveMinimum"] == .bool(true)) }
        node.upper = try number(schema, "maximum", path).map { .init(value: $0, exclusive: schema["exclusiveMaximum"] == .bool(true)) }
        if schema["exclusiveMinimum"]?.typeName != "boolean", let value = try number(schema, "exclusiveMinimum", path) {
            node.lower = Self.tighter(node.lower, .init(value: value, exclusive: true), lower: true)
        }
        if schema["exclusiveMaximum"]?.typeName != "boolean", let value = try number(schema, "exclusiveMaximum", path) {
            node.upper = Self.tighter(node.upper, .init(value: value, exclusive: true), lower: false)
        }
        if let lower = node.lower, let upper = node.upper,
           lower.value > upper.value || (lower.value == upper.value && (lower.exclusive || upper.exclusive)) {
            throw fail(path, "minimum \(SchemaNumberText.describe(lower.value)) is not below maximum \(SchemaNumberText.describe(upper.value)), so no number is valid")
        }
        if let step = try number(schema, "multipleOf", path) {
            guard step > 0 else { throw fail(path, "'multipleOf' must be greater than 0") }
            node.multipleOf = step
        }
        // Strings.
        (node.minLength, node.maxLength) = try countRange(
            schema, "minLength", "maxLength", path, limit: SchemaSampler.maxMinLength, noun: "string")
        if let format = schema["format"] {
            guard let text = format.string else { throw fail(path, "'format' must be a string") }
            node.format = text
        }
        if let pattern = schema["pattern"] {
            guard let text = pattern.string else { throw fail(path, "'pattern' must be a string") }
            do {
                node.pattern = try RegexSampler(pattern: text)
            } catch {
                block(&node, .string, because: error.message)
            }
            // Validation uses ICU; a pattern it rejects (Python-only syntax) could not be checked.
            // ICU's error names no position or cause: the request's error, naming the pattern, says more.
            guard let matcher = try? NSRegularExpression(pattern: text) else {
                throw fail(path, "pattern '\(text)' is not a valid ECMA-262 regular expression")
            }
            node.matcher = matcher
        }
        // Arrays. Draft 4's array form of `items` is a tuple, like prefixItems.
        if let items = schema["items"] {
            if case .array = items {
                node.prefixItems = try subschemas(items, key: "items", path: path, depth: depth)
                node.items = try optionalSubschema(schema["additionalItems"], path: path + "/additionalItems", depth: depth + 1)
            } else {
                node.items = try optionalSubschema(items, path: path + "/items", depth: depth + 1)
            }
        }
        if let prefix = schema["prefixItems"] { node.prefixItems = try subschemas(prefix, key: "prefixItems", path: path, depth: depth) }
        (node.minItems, node.maxItems) = try countRange(
            schema, "minItems", "maxItems", path, limit: SchemaSampler.maxMinItems, noun: "array")
        if let unique = schema["uniqueItems"] {
            guard case .bool(let flag) = unique else { throw fail(path, "'uniqueItems' must be a boolean") }
            node.uniqueItems = flag
        }
        // Objects.
        if let properties = schema["properties"] {
            guard case .object(let members) = properties else { throw fail(path, "'properties' must be an object") }
            node.declaresProperties = true
            for member in members {
                let child = try subschema(member.value, path: "\(path)/properties/\(member.key)", depth: depth + 1)
                node.properties.append((member.key, child))
                node.propertyIndex[member.key] = child
            }
        }
        if let required = schema["required"] {
            guard let names = required.array?.compactMap(\.string), names.count == required.array?.count else {
                throw fail(path, "'required' must be an array of strings")
            }
            for name in names where !node.required.contains(name) { node.required.append(name) }
        }
        node.additional = try optionalSubschema(schema["additionalProperties"], path: path + "/additionalProperties", depth: depth + 1)
        // Combinators.
        if let ref = schema["$ref"] {
            guard let pointer = ref.string else { throw fail(path, "'$ref' must be a string") }
            node.ref = try reference(pointer)
        }
        if let list = schema["allOf"] { node.allOf = try subschemas(list, key: "allOf", path: path, depth: depth) }
        if let list = schema["anyOf"] { node.anyOf = try subschemas(list, key: "anyOf", path: path, depth: depth) }
        if let list = schema["oneOf"] { node.oneOf = try subschemas(list, key: "oneOf", path: path, depth: depth) }
        return node
    }
}

// MARK: - Flattening combinators

extension SchemaCompiler {
    mutating func flattenAll() throws(StructuredOutputError) {
        var index = 0
        while index < nodes.count {  // merging may append conjunction nodes, flattened in turn
            _ = try flatten(index, depth: 0)
            index += 1
        }
    }

    /// A node's alternatives: its own keywords merged with its `$ref` and each `allOf` branch,
    /// times one branch of `anyOf` and of `oneOf`.
    mutating func flatten(_ index: Int, depth: Int) throws(StructuredOutputError) -> [Node] {
        if let done = plans[index] { return done }
        let node = nodes[index]
        guard !flattening.contains(index) else {
            throw fail(node.path, "$ref cycle that never passes through a property or item, so it has no value")
        }
        guard depth <= 2 * SchemaSampler.maxDepth else { throw fail(node.path, "chain of $ref/allOf/anyOf/oneOf is too long") }
        flattening.insert(index)
        defer { flattening.remove(index) }
        var own = node
        (own.ref, own.allOf, own.anyOf, own.oneOf) = (nil, [], [], [])
        var alternatives = [own]
        var oneOf = !node.oneOf.isEmpty
        let parts = (node.ref.map { [[$0]] } ?? []) + node.allOf.map { [$0] } + [node.anyOf, node.oneOf].filter { !$0.isEmpty }
        for part in parts {
            var branches: [Node] = []
            for branch in part {
                branches += try flatten(branch, depth: depth + 1)
                oneOf = oneOf || involvesOneOf[branch] == true
            }
            alternatives = try cross(alternatives, branches, at: node.path)
        }
        // Enum values stay only if they satisfy every other keyword of this node.
        let checkNodes = nodes
        alternatives = alternatives.compactMap { alternative in
            guard let choices = alternative.choices else { return alternative }
            var kept = alternative
            kept.choices = choices.filter { value in
                var validator = SchemaSampler.Validator(nodes: checkNodes)
                validator.skippingChoicesOf = index
                return validator.check(value, index, path: "$", report: false, depth: 0)
            }
            return kept.choices?.isEmpty == false ? kept : nil
        }
        alternatives.removeAll(where: \.isFalse)
        plans[index] = alternatives
        involvesOneOf[index] = oneOf
        return alternatives
    }

    mutating func cross(_ left: [Node], _ right: [Node], at path: String) throws(StructuredOutputError) -> [Node] {
        var result: [Node] = []
        for a in left {
            for b in right {
                if let merged = try merge(a, b) { result.append(merged) }
                guard result.count <= SchemaSampler.maxAlternatives else {
                    throw fail(path, "anyOf/oneOf/allOf combine into more than \(SchemaSampler.maxAlternatives) alternatives, the emulator's limit")
                }
            }
        }
        return result
    }

    /// Both constraint sets at once, or nil when they provably exclude each other.
    mutating func merge(_ a: Node, _ b: Node) throws(StructuredOutputError) -> Node? {
        if a.isFalse || b.isFalse { return nil }
        var m = a
        m.types = a.types.intersection(b.types)
        if m.types.isEmpty { return nil }
        m.keywordTypes.formUnion(b.keywordTypes)
        if let other = b.choices {
            if let mine = a.choices {
                guard mine.count * other.count <= 1_000_000 else { throw fail(a.path, "allOf combines enums too large for the emulator to intersect") }
                m.choices = mine.filter { value in other.contains { SchemaSampler.same($0, value) } }
            } else {
                m.choices = other
            }
            if m.choices?.isEmpty == true { return nil }
        }
        m.lower = Self.tighter(a.lower, b.lower, lower: true)
        m.upper = Self.tighter(a.upper, b.upper, lower: false)
        if let step = b.multipleOf {
            if let mine = a.multipleOf, mine != step {
                let ratio = max(mine, step) / min(mine, step)
                if ratio != ratio.rounded() {
                    block(&m, [.number, .integer], because: "JSON schema at \(a.path): allOf combines multipleOf \(mine) and \(step), which the emulator cannot sample")
                }
                m.multipleOf = max(mine, step)
            } else {
                m.multipleOf = step
            }
        }
        (m.minLength, m.maxLength) = (max(a.minLength, b.minLength), min(a.maxLength, b.maxLength))
        if let format = b.format {
            if let mine = a.format, mine != format {
                block(&m, .string, because: "JSON schema at \(a.path): allOf combines formats '\(mine)' and '\(format)'")
            }
            m.format = format
        }
        m.blockedTypes.formUnion(b.blockedTypes)
        if let matcher = b.matcher {
            if let mine = a.matcher, mine.pattern != matcher.pattern {
                block(&m, .string, because: "JSON schema at \(a.path): allOf combines two patterns, which the emulator cannot sample together")
            }
            (m.pattern, m.matcher) = (b.pattern, matcher)
        }
        m.prefixItems = []
        for position in 0..<max(a.prefixItems.count, b.prefixItems.count) {
            let (mine, theirs) = (a.itemRule(position), b.itemRule(position))
            let rule = try conjoin(mine, theirs)
            if let rule { m.prefixItems.append(rule) } else { m.prefixItems.append(try anythingNode()) }
        }
        m.items = try conjoin(a.items, b.items)
        (m.minItems, m.maxItems, m.uniqueItems) = (max(a.minItems, b.minItems), min(a.maxItems, b.maxItems), a.uniqueItems || b.uniqueItems)
        // A member's schema is its property schema, else additionalProperties, in each branch.
        let names = a.properties.map(\.name) + b.properties.map(\.name).filter { a.propertyIndex[$0] == nil }
        (m.properties, m.propertyIndex) = ([], [:])
        for name in names {
            let conjunction = try conjoin(a.propertyRule(name), b.propertyRule(name))
            let rule: Int
            if let conjunction { rule = conjunction } else { rule = try anythingNode() }
            m.properties.append((name, rule))
            m.propertyIndex[name] = rule
        }
        m.additional = try conjoin(a.additional, b.additional)
        m.declaresProperties = a.declaresProperties || b.declaresProperties
        m.required = a.required + b.required.filter { !a.required.contains($0) }
        return m
    }

    mutating func anythingNode() throws(StructuredOutputError) -> Int {
        if let anything { return anything }
        let index = try append(Node(path: "#"))
        anything = index
        return index
    }

    /// A node standing for both schemas (nil = anything), shared per pair so that recursive
    /// schemas merge into a finite graph.
    mutating func conjoin(_ x: Int?, _ y: Int?) throws(StructuredOutputError) -> Int? {
        guard let x else { return y }
        guard let y, x != y, y != anything else { return x }
        if x == anything || nodes[y].isFalse { return y }
        if nodes[x].isFalse { return x }
        let key = min(x, y) * 1_000_000 + max(x, y)
        if let known = conjunctions[key] { return known }
        var node = Node(path: nodes[x].path)
        node.allOf = [x, y]
        let index = try append(node)
        conjunctions[key] = index
        return index
    }
}
