import HTTPTypes
import Hummingbird
import Synchronization

/// The methods each route path answers, filled once the router is built.
final class AllowedMethods: Sendable {
    private let table = Mutex<[(components: [String], methods: Set<String>)]>([])

    func load(_ routes: [(components: [String], method: HTTPRequest.Method)]) {
        var merged: [(components: [String], methods: Set<String>)] = []
        for route in routes {
            if let i = merged.firstIndex(where: { $0.components == route.components }) {
                merged[i].methods.insert(route.method.rawValue)
            } else {
                merged.append((route.components, [route.method.rawValue]))
            }
        }
        table.withLock { $0 = merged }
    }

    /// The methods a concrete path answers (`{id}` matches any one segment), if any route matches it.
    func methods(for path: String) -> Set<String> {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        return table.withLock { t in
            // As the router does, a literal segment beats a capture: `/recovery/box` is not `/recovery/{id}`.
            let matches = t.compactMap { entry -> (literals: Int, methods: Set<String>)? in
                guard entry.components.count == parts.count,
                    zip(entry.components, parts).allSatisfy({ $0.hasPrefix("{") || $0 == "*" || $0 == $1 })
                else { return nil }
                return (zip(entry.components, parts).filter { $0 == $1 }.count, entry.methods)
            }
            guard let best = matches.map(\.literals).max() else { return [] }
            return matches.filter { $0.literals == best }.reduce(into: Set<String>()) { $0.formUnion($1.methods) }
        }
    }
}

/// A known path asked with a method it does not answer gets 405 with `Allow`, not 404.
struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowed: AllowedMethods

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let methods = allowed.methods(for: request.uri.path)
            guard !methods.isEmpty, !methods.contains(request.method.rawValue) else { throw error }
            var allow = methods
            if allow.contains("GET") { allow.insert("HEAD") }
            throw HubError(
                .methodNotAllowed, "method_not_allowed",
                "\(request.method.rawValue) is not answered here; use \(allow.sorted().joined(separator: ", "))",
                allow: allow.sorted().joined(separator: ", "))
        }
    }
}
