import InferenceAPI
import NIOCore
import Testing

@Suite struct JSONSpliceTests {
    func splice(_ body: String, _ value: String) -> String? {
        JSONSplice.replacingTopLevelString("model", with: value, in: ByteBuffer(string: body)).map { String(buffer: $0) }
    }

    @Test func replacesOnlyTheTopLevelMemberAndKeepsEveryOtherByte() {
        let body = #"{"messages": [{"model": "inner"}], "temperature": 1.50, "model" : "a", "n": 1e2}"#
        #expect(splice(body, "b/c") == #"{"messages": [{"model": "inner"}], "temperature": 1.50, "model" : "b/c", "n": 1e2}"#)
    }

    @Test func escapedKeysAndValuesAndDuplicates() {
        #expect(splice(#"{"mod\u0065l": "x"}"#, "y") == #"{"mod\u0065l": "y"}"#)
        #expect(splice(#"{"model": "a\"b", "prompt": "\"model\": \"a\""}"#, "q\"") == #"{"model": "q\"", "prompt": "\"model\": \"a\""}"#)
        // As json.loads and Go's decoder, the last duplicate is the one that counts.
        #expect(splice(#"{"model": "a", "model": "b"}"#, "c") == #"{"model": "a", "model": "c"}"#)
    }

    @Test func absentOrNotAnObject() {
        #expect(splice(#"{"prompt": "x"}"#, "m") == nil)
        #expect(splice(#"["model"]"#, "m") == nil)
    }
}
