import Foundation
import Testing

@testable import FelhomCore

@Suite struct JSONValueTests {
    @Test func parsesEveryKindAndKeepsIntegersApartFromDoubles() throws {
        let v = try JSONValue.parse(#"{"a":1,"b":1.5,"c":"x","d":true,"e":null,"f":[1,"2"]}"#)
        #expect(v["a"] == .int(1))
        #expect(v["b"] == .double(1.5))
        #expect(v["c"] == .string("x"))
        #expect(v["d"] == .bool(true))
        #expect(v["e"] == .null)
        #expect(v["f"] == .array([.int(1), .string("2")]))
    }

    @Test(arguments: [
        (JSONValue.int(5), Int64?.some(5)), (.string("5"), 5), (.string(" 7 "), 7), (.double(3.0), 3), (.double(3.5), nil),
        (.string("x"), nil), (.null, nil),
    ])
    func lenientIntegers(_ value: JSONValue, _ expected: Int64?) {
        #expect(value.lenientInt == expected)
    }

    @Test(arguments: [
        (JSONValue.int(1), Bool?.some(true)), (.int(0), false), (.string("1"), true), (.string("0"), false), (.bool(true), true),
        (.string("yes"), nil),
    ])
    func lenientBooleans(_ value: JSONValue, _ expected: Bool?) {
        #expect(value.lenientBool == expected)
    }

    @Test func serializesWithSortedKeysAndUnescapedSlashes() {
        let v: JSONValue = ["b": 1, "a": "x/y"]
        #expect(v.serializedString() == #"{"a":"x/y","b":1}"#)
    }

    @Test func invalidJSONIsAnErrorNotACrash() {
        #expect(throws: JSONValueError.self) { try JSONValue.parse("{\"a\":") }
    }
}
