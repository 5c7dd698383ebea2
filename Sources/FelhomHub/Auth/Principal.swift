/// Who is calling: the operator (everything), or a key scoped to one customer.
public enum Principal: Sendable, Equatable {
    case `operator`
    case customer(customerID: String)
    case host(hostID: String, customerID: String)
    case guest(guestID: String, hostID: String, customerID: String)

    /// The customer whose rows this key may reach (`nil` for the operator: all).
    public var customerScope: String? {
        switch self {
        case .operator: return nil
        case .customer(let c), .host(_, let c), .guest(_, _, let c): return c
        }
    }

    /// Whether this key may see rows of `customerID`.
    public func canReach(customerID: String) -> Bool { customerScope.map { $0 == customerID } ?? true }

    public var kind: String {
        switch self {
        case .operator: return "operator"
        case .customer: return "customer"
        case .host: return "host"
        case .guest: return "guest"
        }
    }
}
