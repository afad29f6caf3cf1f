import Foundation
import InferenceAPI
import Testing

@testable import FakeVLLM

/// A named schema as clients send it (JSON text, so the fixtures read like request bodies).
struct SchemaFixture: Sendable, CustomTestStringConvertible {
    var name: String
    var json: String
    var testDescription: String { name }

    func schema() throws -> JSONValue { try JSONValue.parse(json) }

    /// The schema of the fixture whose name starts with `prefix`.
    static func schema(named prefix: String) throws -> JSONValue {
        try #require(all.first { $0.name.hasPrefix(prefix) }).schema()
    }

    static let all: [SchemaFixture] = [
        SchemaFixture(name: "pydantic person with $defs and enum", json: #"""
            {"$defs": {
               "Address": {"properties": {"street": {"title": "Street", "type": "string"},
                                          "city": {"title": "City", "type": "string"},
                                          "zip": {"pattern": "^\\d{5}$", "title": "Zip", "type": "string"}},
                           "required": ["street", "city", "zip"], "title": "Address", "type": "object"},
               "Status": {"enum": ["active", "inactive", "pending"], "title": "Status", "type": "string"}},
             "properties": {"name": {"title": "Name", "type": "string", "minLength": 1, "maxLength": 40},
                            "age": {"title": "Age", "type": "integer", "minimum": 0, "maximum": 130},
                            "status": {"$ref": "#/$defs/Status"},
                            "address": {"$ref": "#/$defs/Address", "description": "Where they live"},
                            "tags": {"items": {"type": "string"}, "title": "Tags", "type": "array"},
                            "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Nickname"}},
             "required": ["name", "age", "status", "address"], "title": "Person", "type": "object",
             "additionalProperties": false}
            """#),
        SchemaFixture(name: "get_weather tool parameters", json: #"""
            {"type": "object",
             "properties": {"location": {"type": "string", "description": "City and state, e.g. San Francisco, CA"},
                            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
             "required": ["location"], "additionalProperties": false}
            """#),
        SchemaFixture(name: "array of objects (chain of thought)", json: #"""
            {"type": "object",
             "properties": {"steps": {"type": "array", "minItems": 1, "maxItems": 5,
                                      "items": {"type": "object", "additionalProperties": false, "required": ["explanation", "output"],
                                                "properties": {"explanation": {"type": "string"}, "output": {"type": "string"}}}},
                            "final_answer": {"type": "string"}},
             "required": ["steps", "final_answer"], "additionalProperties": false}
            """#),
        SchemaFixture(name: "integer and number ranges", json: #"""
            {"type": "object",
             "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10},
                            "offset": {"type": "integer", "exclusiveMinimum": -50, "exclusiveMaximum": -10},
                            "even": {"type": "integer", "multipleOf": 2, "minimum": 3, "maximum": 9},
                            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
                            "price": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.01},
                            "step": {"type": "number", "multipleOf": 5, "maximum": 1000},
                            "big": {"type": "integer", "minimum": 1000000000000},
                            "legacy": {"type": "number", "minimum": 2, "exclusiveMinimum": true, "maximum": 2.5}},
             "required": ["score", "offset", "even", "ratio", "price", "step", "big", "legacy"]}
            """#),
        SchemaFixture(name: "string formats", json: #"""
            {"type": "object",
             "properties": {"day": {"type": "string", "format": "date"}, "at": {"type": "string", "format": "date-time"},
                            "clock": {"type": "string", "format": "time"}, "email": {"type": "string", "format": "email"},
                            "id": {"type": "string", "format": "uuid"}, "site": {"type": "string", "format": "uri"},
                            "ip": {"type": "string", "format": "ipv4"}, "ip6": {"type": "string", "format": "ipv6"},
                            "host": {"type": "string", "format": "hostname"},
                            "short": {"type": "string", "format": "email", "maxLength": 30},
                            "padded": {"type": "string", "minLength": 50, "maxLength": 60}},
             "required": ["day", "at", "clock", "email", "id", "site", "ip", "ip6", "host", "short", "padded"]}
            """#),
        SchemaFixture(name: "optional fields as anyOf with null", json: #"""
            {"type": "object",
             "properties": {"answer": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                            "confidence": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}], "default": null},
                            "source": {"anyOf": [{"$ref": "#/$defs/Source"}, {"type": "null"}]},
                            "note": {"type": ["string", "null"], "maxLength": 12}},
             "required": ["answer", "confidence", "source", "note"],
             "$defs": {"Source": {"type": "object", "required": ["url"],
                                  "properties": {"url": {"type": "string", "format": "uri"}, "title": {"type": "string"}}}}}
            """#),
        SchemaFixture(name: "recursive tree via $ref", json: #"""
            {"$defs": {"Node": {"type": "object", "required": ["value", "children"],
                                "properties": {"value": {"type": "integer"},
                                               "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
             "$ref": "#/$defs/Node"}
            """#),
        SchemaFixture(name: "recursive optional linked list via definitions", json: #"""
            {"definitions": {"Item": {"type": "object", "required": ["label"],
                                      "properties": {"label": {"type": "string"},
                                                     "next": {"anyOf": [{"$ref": "#/definitions/Item"}, {"type": "null"}]}}}},
             "type": "object", "properties": {"head": {"$ref": "#/definitions/Item"}}, "required": ["head"]}
            """#),
        SchemaFixture(name: "discriminated union with oneOf", json: #"""
            {"$defs": {"Cat": {"properties": {"pet_type": {"const": "cat", "type": "string"}, "meows": {"type": "integer"}},
                               "required": ["pet_type", "meows"], "type": "object"},
                       "Dog": {"properties": {"pet_type": {"const": "dog", "type": "string"}, "barks": {"type": "number"}},
                               "required": ["pet_type", "barks"], "type": "object"}},
             "properties": {"pet": {"discriminator": {"mapping": {"cat": "#/$defs/Cat", "dog": "#/$defs/Dog"}, "propertyName": "pet_type"},
                                    "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]},
                            "count": {"oneOf": [{"type": "integer"}, {"type": "number"}]}},
             "required": ["pet", "count"], "type": "object"}
            """#),
        SchemaFixture(name: "allOf, tuples, sets and patterns", json: #"""
            {"type": "object",
             "properties": {"color": {"allOf": [{"$ref": "#/definitions/Color"}], "description": "pydantic v1 style"},
                            "point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "string"}], "minItems": 2, "maxItems": 2},
                            "legacy_tuple": {"type": "array", "items": [{"type": "integer"}, {"type": "boolean"}], "additionalItems": false},
                            "labels": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c", "d"]}, "uniqueItems": true, "minItems": 2},
                            "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{3}$"},
                            "slug": {"type": "string", "pattern": "[a-z]+(-[a-z]+)*", "maxLength": 12},
                            "extra": {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                                                {"properties": {"b": {"type": "integer", "minimum": 5}}, "required": ["b"]}]},
                            "anything": {},
                            "choice": {"enum": ["x", 1, null, true, {"k": [1, 2]}]}},
             "required": ["color", "point", "legacy_tuple", "labels", "code", "slug", "extra", "anything", "choice"],
             "definitions": {"Color": {"type": "string", "enum": ["red", "green", "blue"]}}}
            """#),
        SchemaFixture(name: "pydantic Decimal (a lookahead pattern the sampler avoids)", json: #"""
            {"type": "object",
             "properties": {"amount": {"anyOf": [{"type": "number"}, {"type": "string", "pattern": "^(?!^[-+.]*$)[+-]?0*\\d*\\.?\\d*$"}]},
                            "maybe": {"type": ["string", "null"], "pattern": "^(?=x)x+$"}},
             "required": ["amount", "maybe"]}
            """#),
        SchemaFixture(name: "json_object mode", json: #"{"type": "object"}"#),
        SchemaFixture(name: "empty schema", json: "{}"),
        SchemaFixture(name: "top-level array of records", json: #"""
            {"type": "array", "maxItems": 100,
             "items": {"type": "object", "additionalProperties": {"type": "integer", "maximum": -1},
                       "properties": {"id": {"type": "integer", "minimum": 1}}, "required": ["id", "rank"]}}
            """#),
    ]
}

@Suite struct SchemaSamplerTests {
    @Test(arguments: SchemaFixture.all)
    func samplesAreValidAndWriteAsJSON(fixture: SchemaFixture) throws {
        let sampler = try SchemaSampler(schema: try fixture.schema())
        var failures: [String] = []
        var distinct: [JSONValue] = []
        for seed in 0..<500 {
            var generator = SplitMix64(seed: UInt64(seed))
            let value = sampler.sample(using: &generator)
            let problems = sampler.validate(value)
            let text = value.jsonText()
            if !problems.isEmpty, failures.count < 5 { failures.append("\(text): \(problems)") }
            let parsed = try JSONValue.parse(text)
            #expect(parsed == value, "\(text) did not parse back to the same value")
            if distinct.count < 10, !distinct.contains(value) { distinct.append(value) }
        }
        #expect(failures.isEmpty, "\(failures)")
        #expect(distinct.count > 1, "500 seeds gave a single value")
    }

    @Test(arguments: SchemaFixture.all)
    func sameSeedGivesSameValue(fixture: SchemaFixture) throws {
        let first = try SchemaSampler(schema: try fixture.schema())
        let second = try SchemaSampler(schema: try fixture.schema())
        for seed in [0, 1, 42, 0xDEAD_BEEF] as [UInt64] {
            var a = SplitMix64(seed: seed), b = SplitMix64(seed: seed)
            #expect(first.sample(using: &a) == second.sample(using: &b))
        }
    }

    @Test func toolArgumentsLookLikeAModelsCall() throws {
        let sampler = try SchemaSampler(schema: try SchemaFixture.schema(named: "get_weather"))
        var generator = SplitMix64(seed: 7)
        for _ in 0..<100 {
            guard case .object(let arguments) = sampler.sample(using: &generator) else {
                Issue.record("arguments are not an object")
                return
            }
            #expect(arguments["location"]?.string?.isEmpty == false)
            #expect(Set(arguments.keys).isSubset(of: ["location", "unit"]))
            if let unit = arguments["unit"] { #expect(unit == "celsius" || unit == "fahrenheit") }
        }
    }

    @Test func jsonObjectModeGivesASmallObject() throws {
        for schema in [JSONValue.object([:]), .object(["type": "object"])] {
            let sampler = try SchemaSampler(schema: schema)
            var generator = SplitMix64(seed: 3)
            guard case .object(let object) = sampler.sample(using: &generator) else {
                Issue.record("not an object")
                continue
            }
            #expect(object.count == 1)
            #expect(object.members.first?.value.string?.isEmpty == false)
        }
    }

    @Test func aToolWithoutParametersIsCalledWithAnEmptyObject() throws {
        let sampler = try SchemaSampler(schema: try JSONValue.parse(#"{"type": "object", "properties": {}}"#))
        var generator = SplitMix64(seed: 3)
        #expect(sampler.sample(using: &generator) == .object([:]))
    }

    @Test func recursionTerminatesAndStaysSmall() throws {
        let sampler = try SchemaSampler(schema: try SchemaFixture.schema(named: "recursive tree"))
        func depth(_ value: JSONValue) -> Int {
            switch value {
            case .array(let items): 1 + (items.map(depth).max() ?? 0)
            case .object(let fields): 1 + (fields.map { depth($0.value) }.max() ?? 0)
            default: 0
            }
        }
        var deepest = 0
        for seed in 0..<300 {
            var generator = SplitMix64(seed: UInt64(seed))
            let value = sampler.sample(using: &generator)
            deepest = max(deepest, depth(value))
            #expect(value.jsonText().utf8.count < 200_000)
        }
        #expect(deepest > 2)  // it does recurse
        #expect(deepest <= 2 * SchemaSampler.minimalDepth + 2)
    }

    @Test func validateReportsWhatIsWrong() throws {
        let person = try SchemaSampler(schema: try SchemaFixture.schema(named: "pydantic person"))
        let bad = try JSONValue.parse(#"""
            {"name": "", "age": 200, "status": "retired", "address": {"street": "x", "zip": "1234a"}, "tags": [1], "extra": 1}
            """#)
        let problems = person.validate(bad).joined(separator: "\n")
        for expected in ["$.name: is 0 characters long, shorter than minLength 1", "$.age: must be at most 130",
                         "$.status: must be one of the schema's enum values", "$.address: missing required property 'city'",
                         "$.address.zip: does not match pattern", "$.tags[0]: expected string, got integer",
                         "$.extra: no value is allowed here"] {
            #expect(problems.contains(expected), "missing \(expected) in \(problems)")
        }
        #expect(person.validate(.array([])) == ["$: expected object, got array"])

        let union = try SchemaSampler(schema: try JSONValue.parse(#"{"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}], "anyOf": [{"type": "string"}]}"#))
        #expect(union.validate("abcdef").isEmpty)
        #expect(union.validate("ab") == ["$: matches more than one oneOf alternative"])
        #expect(union.validate(4) == ["$: matches none of the anyOf alternatives", "$: matches none of the oneOf alternatives"])
    }

    @Test func patternsTheSamplerAvoidsAreStillValidated() throws {
        let sampler = try SchemaSampler(schema: try SchemaFixture.schema(named: "pydantic Decimal"))
        #expect(sampler.validate(try JSONValue.parse(#"{"amount": "12.50", "maybe": "xx"}"#)).isEmpty)
        #expect(sampler.validate(try JSONValue.parse(#"{"amount": "-.", "maybe": "yy"}"#)) == [
            "$.amount: matches none of the anyOf alternatives", "$.maybe: does not match pattern '^(?=x)x+$'",
        ])
    }

    @Test func formatsAreCheckedStrictly() {
        let valid: [(String, String)] = [
            ("date", "2024-02-29"), ("date-time", "2024-03-15T10:23:45.123+02:00"), ("time", "23:59:60Z"),
            ("email", "first.last@example.com"), ("uuid", "123e4567-e89b-42d3-a456-426614174000"),
            ("uri", "https://example.com/a?b=c"), ("ipv4", "192.168.0.1"), ("ipv6", "fe80::1"), ("hostname", "api.example.com"),
        ]
        let invalid: [(String, String)] = [
            ("date", "2023-02-29"), ("date", "2024-13-01"), ("date-time", "2024-03-15 10:23:45Z"), ("time", "10:23:45"),
            ("email", "no-at-sign"), ("uuid", "123e4567e89b42d3a456426614174000"), ("uri", "example.com"),
            ("ipv4", "256.1.1.1"), ("ipv4", "01.2.3.4"), ("ipv6", "1::2::3"), ("hostname", "-bad.example.com"),
        ]
        for (format, text) in valid { #expect(SchemaSampler.conforms(text, to: format), "\(format) \(text)") }
        for (format, text) in invalid { #expect(!SchemaSampler.conforms(text, to: format), "\(format) \(text)") }
    }

    static let refusals: [(String, String)] = [
        (#"{"not": {"type": "string"}}"#, "JSON schema keyword 'not' is not supported by the emulator"),
        (#"{"if": {"type": "string"}, "then": {"minLength": 2}}"#, "JSON schema keyword 'if' is not supported by the emulator"),
        (#"{"type": "object", "patternProperties": {"^x": {}}}"#, "JSON schema keyword 'patternProperties' is not supported by the emulator"),
        (#"{"properties": {"a": {"dependentSchemas": {}}}}"#, "JSON schema keyword 'dependentSchemas' is not supported by the emulator"),
        (#"{"type": "integer", "minimum": 10, "maximum": 5}"#, "JSON schema at #: minimum 10 is not below maximum 5, so no number is valid"),
        (#"{"type": "number", "exclusiveMinimum": 1, "maximum": 1}"#, "minimum 1 is not below maximum 1"),
        (#"{"properties": {"s": {"minLength": 5, "maxLength": 2}}}"#, "JSON schema at #/properties/s: minLength 5 is greater than maxLength 2"),
        (#"{"type": "array", "minItems": 3, "maxItems": 1}"#, "minItems 3 is greater than maxItems 1"),
        (#"{"$ref": "https://example.com/person.json"}"#, "JSON schema $ref 'https://example.com/person.json' points outside the document"),
        (##"{"$ref": "#/$defs/Missing"}"##, "JSON schema $ref '#/$defs/Missing' does not point to anything in the document"),
        (##"{"$ref": "#thing"}"##, "names an anchor"),
        (#"{"type": "strnig"}"#, "'type' must be a JSON type name"),
        (#"{"enum": []}"#, "'enum' must be a non-empty array"),
        (#"{"type": "string", "pattern": "(a)\\1"}"#, "backreference '\\1' is not supported by the emulator"),
        (#"{"type": "string", "pattern": "(?=a)b"}"#, "lookaround"),
        (#"{"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 100}]}"#, "oneOf must match exactly one branch"),
        (#"{"type": "string", "format": "email", "maxLength": 3}"#, "found no value satisfying all of its keywords"),
        (##"{"$defs": {"A": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "required": ["a"]}}, "$ref": "#/$defs/A"}"##,
         "allows no value the emulator can generate"),
        (##"{"$defs": {"A": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]}}, "$ref": "#/$defs/A"}"##, "$ref cycle"),
        (#"{"type": "array", "minItems": 1000000}"#, "minItems 1000000 is above the emulator's limit of 256"),
        (#"{"type": "array", "minItems": -5}"#, "'minItems' must be a non-negative integer"),
        (#"{"type": "string", "minLength": 9223372036854775807}"#, "above the emulator's limit"),
        (#"{"type": "integer", "minimum": 1e308}"#, "allows no value the emulator can generate"),
        (#"{"allOf": [{"type": "string"}, {"type": "integer"}]}"#, "allows no value"),
        (#"{"allOf": [{"pattern": "a"}, {"pattern": "b"}]}"#, "two patterns"),
        (#"{"properties": 5}"#, "'properties' must be an object"),
        (#"{"type": "object", "additionalProperties": false, "required": ["x"]}"#, "allows no value"),
    ]

    @Test(arguments: refusals)
    func refusesWhatItCannotHonour(schema: String, message: String) throws {
        let value = try JSONValue.parse(schema)
        do {
            _ = try SchemaSampler(schema: value)
            Issue.record("\(schema) was accepted")
        } catch {
            #expect(error.message.contains(message), "got: \(error.message)")
        }
    }
}

/// Schemas no client should send; each must be refused or sampled quickly, never trap.
@Suite struct HostileSchemaTests {
    @Test func tenThousandLevelsOfNestingAreRefused() {
        var items: JSONValue = .object(["type": "string"])
        var properties = items, anyOf = items
        for _ in 0..<10_000 {
            items = .object(["type": "array", "items": items])
            properties = .object(["type": "object", "properties": .object(["x": properties]), "required": .array(["x"])])
            anyOf = .object(["anyOf": .array([anyOf, .object(["type": "null"])])])
        }
        for schema in [items, properties, anyOf] {
            #expect(throws: StructuredOutputError.self) { try SchemaSampler(schema: schema) }
        }
    }

    @Test func extremeNumbersStayFinite() throws {
        let cases: [(String, ClosedRange<Double>)] = [
            (#"{"type": "number", "minimum": 1e308}"#, 1e308...Double.greatestFiniteMagnitude),
            (#"{"type": "number", "maximum": -1e308}"#, -Double.greatestFiniteMagnitude...(-1e308)),
            (#"{"type": "number", "minimum": -1e308, "maximum": 1e308}"#, -1e308...1e308),
            (#"{"type": "integer", "minimum": -9223372036854775808, "maximum": 9223372036854775807}"#, -9.3e18...9.3e18),
            (#"{"type": "integer", "minimum": 4611686018427387000}"#, 4.6e18...4.7e18),
            (#"{"type": "number", "multipleOf": 1e-300, "maximum": 1}"#, -1e15...1),
            (#"{"type": "integer", "multipleOf": 1e18}"#, -1e19...1e19),
            (#"{"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 5e-324}"#, 0...1),
        ]
        for (text, range) in cases {
            let sampler: SchemaSampler
            do {
                sampler = try SchemaSampler(schema: try JSONValue.parse(text))
            } catch {
                continue  // refusing is fine; trapping is not
            }
            for seed in 0..<50 {
                var generator = SplitMix64(seed: UInt64(seed))
                let value = sampler.sample(using: &generator)
                #expect(sampler.validate(value).isEmpty, "\(text): \(value)")
                switch value {
                case .integer(let number): #expect(range.contains(Double(number)))
                case .double(let number): #expect(number.isFinite && range.contains(number), "\(text): \(number)")
                default: Issue.record("\(text) gave \(value)")
                }
            }
        }
    }

    @Test func hugeLengthsAndEnumsAreBounded() throws {
        let schemas: [JSONValue] = [
            .object(["type": "string", "maxLength": .integer(Int.max)]),
            .object(["type": "string", "minLength": 10_000]),
            .object(["type": "array", "maxItems": .integer(Int.max), "minItems": 256, "items": .object(["type": "integer"])]),
            .object(["enum": .array((0..<100_000).map { .integer($0) })]),
            .object(["type": "object", "properties": .object(jsonObject((0..<3_000).map { ("p\($0)", .object(["type": "integer"])) }))]),
        ]
        let clock = ContinuousClock()
        for schema in schemas {
            let start = clock.now
            let sampler = try SchemaSampler(schema: schema)
            for seed in 0..<20 {
                var generator = SplitMix64(seed: UInt64(seed))
                let value = sampler.sample(using: &generator)
                #expect(sampler.validate(value).isEmpty)
                #expect(value.jsonText().utf8.count < 1_000_000)
            }
            #expect(clock.now - start < .seconds(20))
        }
    }

    @Test func explosiveSchemasAreRefused() throws {
        // 60 levels of arrays each needing 8 items: 8^60 values in the smallest instance.
        var nested: JSONValue = .object(["type": "integer"])
        for _ in 0..<60 { nested = .object(["type": "array", "minItems": 8, "items": nested]) }
        // allOf of 10 two-way anyOfs: 1024 alternatives.
        let branches: [JSONValue] = (0..<10).map { _ in
            .object(["anyOf": .array([.object(["type": "string"]), .object(["type": "string", "maxLength": 9])])])
        }
        // More subschemas than the limit.
        let wide: JSONValue = .object(["properties": .object(jsonObject((0..<5_000).map { ("p\($0)", .object([:])) }))])
        for schema in [nested, .object(["allOf": .array(branches)]), wide] {
            #expect(throws: StructuredOutputError.self) { try SchemaSampler(schema: schema) }
        }
        // Recursion through two optional paths stays bounded in size.
        let bushy = try JSONValue.parse(#"""
            {"$defs": {"T": {"type": "object", "properties": {"l": {"$ref": "#/$defs/T"}, "r": {"$ref": "#/$defs/T"},
                                                              "kids": {"type": "array", "minItems": 2, "maxItems": 8, "items": {"$ref": "#/$defs/T"}}}}},
             "$ref": "#/$defs/T"}
            """#)
        let sampler = try SchemaSampler(schema: bushy)
        for seed in 0..<50 {
            var generator = SplitMix64(seed: UInt64(seed))
            let value = sampler.sample(using: &generator)
            #expect(sampler.validate(value).isEmpty)
            #expect(value.jsonText().utf8.count < 200_000)
        }
    }

    /// `$defs` D0 → D1 → … each requiring the next: the smallest instance is `levels` deep.
    static func chain(_ levels: Int) -> JSONValue {
        var defs = JSONObject()
        for level in 0..<levels {
            let next: JSONValue = level + 1 < levels ? .object(["$ref": .string("#/$defs/D\(level + 1)")]) : .object(["type": "integer"])
            defs["D\(level)"] = .object(["type": "object", "properties": .object(["next": next]), "required": .array(["next"])])
        }
        return .object(["$defs": .object(defs), "$ref": "#/$defs/D0"])
    }

    @Test func longReferenceChainsAreBoundedInDepth() throws {
        let sampler = try SchemaSampler(schema: Self.chain(100))
        var generator = SplitMix64(seed: 1)
        let value = sampler.sample(using: &generator)
        #expect(sampler.validate(value).isEmpty)
        #expect(throws: StructuredOutputError.self) { try SchemaSampler(schema: Self.chain(2_000)) }
    }

    @Test func hostileValuesDoNotTrapTheValidator() throws {
        var deep: JSONValue = 1
        for _ in 0..<5_000 { deep = .array([deep]) }
        let recursive = try SchemaSampler(schema: try JSONValue.parse(##"{"type": "array", "items": {"$ref": "#"}}"##))
        #expect(!recursive.validate(deep).isEmpty)
        let unique = try SchemaSampler(schema: .object(["type": "array", "uniqueItems": true]))
        #expect(unique.validate(.array((0..<20_000).map { .integer($0) })).count == 1)  // too costly to check: reported, not hung
    }
}

/// An object with these members, in order.
private func jsonObject(_ members: [(String, JSONValue)]) -> JSONObject {
    var object = JSONObject()
    for (key, value) in members { object[key] = value }
    return object
}

/// Random schemas from the supported subset (bounds, formats, patterns, enums, objects, arrays,
/// combinators, a recursive `$ref`), to catch any disagreement between sampler and validator.
struct SchemaFuzzer {
    var g: SplitMix64
    mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &g) }
    mutating func coin() -> Bool { Bool.random(using: &g) }
    mutating func literal() -> JSONValue {
        switch int(0...5) {
        case 0: return .null
        case 1: return .bool(coin())
        case 2: return .integer(int(-5...5))
        case 3: return .double(Double(int(-50...50)) / 4)
        case 4: return .string(["a", "bb", "ccc", "2024-01-01", "x@y.com"][int(0...4)])
        default: return .array([.integer(int(0...3))])
        }
    }
    mutating func schema(_ depth: Int) -> JSONValue {
        var o = JSONObject()
        let pick = depth > 3 ? int(0...4) : int(0...12)
        switch pick {
        case 0:
            o["type"] = "integer"
            if coin() { o["minimum"] = .integer(int(-20...20)) }
            if coin() { o["maximum"] = .integer(int(-20...20)) }
            if coin() { o["exclusiveMinimum"] = .integer(int(-20...20)) }
            if coin() { o["multipleOf"] = .integer(int(1...5)) }
        case 1:
            o["type"] = "number"
            if coin() { o["minimum"] = .double(Double(int(-40...40)) / 4 * (coin() ? 1 : 1e300)) }
            if coin() { o["exclusiveMaximum"] = .double(Double(int(-40...40)) / 4) }
            if coin() { o["multipleOf"] = [.double(0.5), .double(0.25), .double(0.1), .integer(3)][int(0...3)] }
        case 2:
            o["type"] = coin() ? "string" : .array(["string", "null"])
            if coin() { o["minLength"] = .integer(int(0...8)) }
            if coin() { o["maxLength"] = .integer(int(0...12)) }
            if coin() { o["format"] = .string(["date", "date-time", "time", "email", "uuid", "uri", "ipv4", "ipv6", "hostname", "weird"][int(0...9)]) }
            else if coin() { o["pattern"] = .string(["^[a-c]{2,5}$", "x+y?", "^(ab|c)*d$", "\\d{2,3}", "[^a]"][int(0...4)]) }
        case 3:
            o["enum"] = .array((0..<int(1...4)).map { _ in literal() })
            if coin() { o["type"] = ["string", "integer", "number", "null"][int(0...3)] }
        case 4:
            if coin() { o["const"] = literal() } else { o["type"] = ["boolean", "null"][int(0...1)] }
        case 5, 6:
            o["type"] = "object"
            var props = JSONObject()
            var req: [JSONValue] = []
            for k in 0..<int(0...3) {
                props["p\(k)"] = schema(depth + 1)
                if coin() { req.append(.string("p\(k)")) }
            }
            if coin() { req.append("extra") }
            o["properties"] = .object(props)
            o["required"] = .array(req)
            switch int(0...2) {
            case 0: o["additionalProperties"] = false
            case 1: o["additionalProperties"] = schema(depth + 1)
            default: break
            }
        case 7, 8:
            o["type"] = "array"
            if coin() { o["items"] = int(0...4) == 0 ? .bool(false) : schema(depth + 1) }
            if coin() { o["prefixItems"] = .array([schema(depth + 1), schema(depth + 1)]) }
            if coin() { o["minItems"] = .integer(int(0...3)) }
            if coin() { o["maxItems"] = .integer(int(0...4)) }
            if coin() { o["uniqueItems"] = .bool(coin()) }
        case 9:
            o["anyOf"] = .array((0..<int(1...3)).map { _ in schema(depth + 1) })
        case 10:
            o["oneOf"] = .array((0..<int(1...3)).map { _ in schema(depth + 1) })
        case 11:
            o["allOf"] = .array((0..<int(1...2)).map { _ in schema(depth + 1) })
        default:
            switch int(0...3) {
            case 0: o["$ref"] = "#/$defs/R"
            case 1: o["$ref"] = "#"
            case 2: return .bool(coin())
            default: return .object(["type": .array(["integer", "string", "null"]), "nullable": true, "maximum": -3, "maxLength": 2])
            }
        }
        return .object(o)
    }
}

@Suite struct SchemaFuzzTests {
    /// Whatever a random schema is, the sampler either refuses it or only draws valid values.
    @Test func randomSchemasAreRefusedOrSampledValidly() throws {
        var accepted = 0
        var failures: [String] = []
        for seed in 0..<1_000 as Range<UInt64> {
            var fuzzer = SchemaFuzzer(g: SplitMix64(seed: seed))
            var root = fuzzer.schema(0)
            if case .object(var members) = root {
                let recursive: JSONValue = .object(["v": fuzzer.schema(2), "next": .object(["$ref": "#/$defs/R"])])
                members["$defs"] = .object(["R": .object(["type": "object", "properties": recursive])])
                root = .object(members)
            }
            guard let sampler = try? SchemaSampler(schema: root) else { continue }
            accepted += 1
            for sample in 0..<20 as Range<UInt64> {
                var generator = SplitMix64(seed: sample)
                let value = sampler.sample(using: &generator)
                let problems = sampler.validate(value)
                if !problems.isEmpty, failures.count < 5 {
                    failures.append("\(root.jsonText()) gave \(value.jsonText()): \(problems)")
                    break
                }
            }
        }
        #expect(failures.isEmpty, "\(failures)")
        #expect(accepted > 500)  // most random schemas are satisfiable and accepted
    }
}

@Suite struct RegexSamplerTests {
    static let patterns = [
        #"\d{3}-\d{4}"#, #"\(\d{3}\) \d{3}-\d{4}"#, #"\+1-\d{3}-\d{3}-\d{4}"#, #"[a-z]+@[a-z]+\.com"#, "(yes|no)",
        #"^(?:\d{1,3}\.){3}\d{1,3}$"#, #"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"#, "[A-Z][a-z]{2,8}( [A-Z][a-z]{2,8})?",
        #"[^aeiou\s]{3,6}"#, ".{5,10}", #"[-_a-zA-Z0-9]+\.(json|yaml)"#, "(ab|cd)*?e+f?g{2,}", #"\$\d+\.\d{2}"#,
        "#[0-9a-fA-F]{6}", #"(?<word>\w+)\s\W\S\D"#, #"[\u0400-\u04FF]{2}\x41\t"#, "^yes$|^no$", "",
    ]

    @Test(arguments: patterns)
    func samplesMatchTheWholePattern(pattern: String) throws {
        let sampler = try RegexSampler(pattern: pattern)
        let matcher = try NSRegularExpression(pattern: "^(?:\(pattern))$")
        var mismatches: [String] = []
        var distinct = Set<String>()
        for seed in 0..<1_000 {
            var generator = SplitMix64(seed: UInt64(seed))
            let text = sampler.sample(using: &generator)
            distinct.insert(text)
            if matcher.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) == nil, mismatches.count < 5 {
                mismatches.append(text)
            }
            #expect(sampler.lengthRange.contains(text.unicodeScalars.count))
        }
        #expect(mismatches.isEmpty, "\(pattern) does not match \(mismatches)")
        #expect(distinct.count > 1 || pattern.isEmpty)
    }

    @Test func sameSeedGivesSameString() throws {
        let sampler = try RegexSampler(pattern: "[a-z]{3,9}@[a-z]+\\.(com|org)")
        var a = SplitMix64(seed: 99), b = SplitMix64(seed: 99)
        #expect(sampler.sample(using: &a) == sampler.sample(using: &b))
    }

    @Test func acceptsPythonNamedGroups() throws {
        let sampler = try RegexSampler(pattern: "(?P<year>\\d{4})-(?P<month>\\d{2})")
        var generator = SplitMix64(seed: 1)
        #expect(sampler.sample(using: &generator).unicodeScalars.count == 7)
    }

    static let refusals: [(String, String)] = [
        (#"(a)\1"#, "backreference"), (#"(?<name>a)\k<name>"#, "backreference"), ("(?=a)b", "lookaround"),
        ("(?!a)b", "lookaround"), ("(?<=a)b", "lookaround"), ("(?<!a)b", "lookaround"), (#"a\b"#, "anchor '\\b'"),
        (#"\p{L}"#, "Unicode property"), ("a{2,1}", "minimum above maximum"), ("a**", "after a quantifier"), ("a++", "possessive"),
        ("[z-a]", "out of order"), ("(a", "unclosed '('"), ("a)", "unmatched ')'"), ("(?i)abc", "group syntax"),
        ("a{1001}", "repetition count above 1000"), ("[[:alpha:]]", "'[' inside a character class"), ("*a", "nothing to repeat"),
        ("a^b", "'^' inside the pattern"), ("a$b", "'$' inside the pattern"), (#"\q"#, "escape '\\q'"), ("a{", "repetition count"),
        ("((a{100}){100}){100}", "longer than the emulator's limit"), ("[^\\x20-\\x7E]", "matches nothing printable"),
        (String(repeating: "(", count: 10_000), "nesting deeper than 64"),
    ]

    @Test(arguments: refusals)
    func refusesWhatItCannotSample(pattern: String, expected: String) {
        do {
            _ = try RegexSampler(pattern: pattern)
            Issue.record("\(pattern) was accepted")
        } catch {
            #expect(error.message.contains(expected), "\(pattern): \(error.message)")
        }
    }
}
