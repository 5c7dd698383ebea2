/// Why an operator signature or op blob was refused. The code is stable; the message is for people.
///
/// Codes follow the verification pipeline: `malformed` (armor, key, blob), `namespace`,
/// `unknownSigner`, `badSignature`, `target`, `expired`, `notYetValid`, `replay`.
public struct SignatureError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable codes; new ones may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        private init(_ raw: String) { rawValue = raw }
        public var description: String { rawValue }

        /// The armor, key, signature structure or op blob does not parse or breaks a rule.
        public static let malformed = Code("malformed")
        /// The signature was made for another namespace than `felhom-op-v1`.
        public static let namespace = Code("namespace")
        /// The key is not one of the pinned signers.
        public static let unknownSigner = Code("unknownSigner")
        /// The signature does not verify over the received bytes.
        public static let badSignature = Code("badSignature")
        /// The op is for another host.
        public static let target = Code("target")
        /// The op's validity window has passed.
        public static let expired = Code("expired")
        /// The op's validity window has not begun.
        public static let notYetValid = Code("notYetValid")
        /// The op's nonce was seen before (or the nonce store could not confirm it was not).
        public static let replay = Code("replay")
        /// A key could not be used for signing (encrypted, unsupported type).
        public static let unsupportedKey = Code("unsupportedKey")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
