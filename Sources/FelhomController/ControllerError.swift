import Foundation

/// A controller failure: a code scripts can branch on and a one-line message naming the thing.
public struct ControllerError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// No stack folder of that name under `stacks.dir`.
        case unknownStack = "unknown_stack"
        /// The platform never stops or removes an infrastructure stack.
        case protectedStack = "protected_stack"
        /// The compose file does not validate.
        case invalidCompose = "invalid_compose"
        /// Docker / Compose failed or could not be run.
        case runtime
        /// A setting or the settings file is wrong.
        case config
        /// Another controller holds the state directory's quiesce lock.
        case busy
        /// A secret bundle could not be written (bad name, bad file, group, file system).
        case secrets
        /// The hub could not be reached or refused.
        case hub
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code.rawValue): \(message)" }
}
