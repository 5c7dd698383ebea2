import FelhomCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// An API error: HTTP status, a stable code and a message a person can act on.
public struct HubError: Error, Sendable, CustomStringConvertible, HTTPResponseError {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    /// For bad input: the JSON path of what is wrong.
    public var path: String?
    /// For 429: seconds until a retry can succeed (sent as `Retry-After`).
    public var retryAfter: Int?
    /// For 405: the methods the path answers (sent as `Allow`).
    public var allow: String?
    /// More fields of the error object (e.g. `quota`, `limit`, `usage`, `requested`).
    public var details: [String: JSONValue] = [:]

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, path: String? = nil, retryAfter: Int? = nil, allow: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.path = path
        self.retryAfter = retryAfter
        self.allow = allow
    }

    static func tooManyRequests(retryAfter: Int, what: String) -> HubError {
        let seconds = max(1, retryAfter)
        return HubError(.tooManyRequests, "rate_limited", "too many \(what) from this key: retry in \(seconds) s", retryAfter: seconds)
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    static func badRequest(_ message: String, path: String? = nil) -> HubError { HubError(.badRequest, "bad_request", message, path: path) }
    static let unauthorized = HubError(.unauthorized, "unauthorized", "missing, unknown or revoked API key (Authorization: Bearer KEY)")
    static func forbidden(_ what: String) -> HubError { HubError(.forbidden, "forbidden", "this key may not \(what)") }
    static func notFound(_ what: String) -> HubError { HubError(.notFound, "not_found", "\(what) not found") }
    /// A well-formed signature that does not authorize the op (wrong namespace, unknown key, does
    /// not verify): refused like any credential that does not grant the request.
    static func signatureRefused(_ message: String, path: String? = "$.signature") -> HubError {
        HubError(.forbidden, "signature_refused", message, path: path)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var err: [String: JSONValue] = details
        err["code"] = .string(code)
        err["message"] = .string(message)
        if let path { err["path"] = .string(path) }
        let body = JSONValue.object(["error": .object(err)]).serialized()
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        if let allow { headers[.allow] = allow }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

extension StoreError: HTTPResponseError {
    /// A conflict is the caller's (409); anything else is the database's (503), without internals.
    public var status: HTTPResponse.Status { code == .conflict ? .conflict : .serviceUnavailable }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let hubError =
            code == .conflict
            ? HubError(.conflict, "conflict", "the resource already exists")
            : HubError(.serviceUnavailable, "store_unavailable", "the hub's database is unavailable; retry later")
        return try hubError.response(from: request, context: context)
    }
}
