import FelhomAPI
import FelhomCore
import Hummingbird

/// Customers, their keys, notification choices, suspension and config overrides.
enum CustomerRoutes {
    static func collection(_ hub: Hub) -> RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("customers") { req, ctx in
            let body = try await HubAPI.decode(NewCustomer.self, req)
            return try HubAPI.encode(Created(id: try await hub.createCustomer(body, by: ctx.principal)), status: .created)
        }
        routes.get("customers") { _, ctx in
            try HubAPI.encode(CustomerList(customers: try await hub.customers(by: ctx.principal)))
        }
        routes.get("customers/:id") { _, ctx in
            try HubAPI.encode(try await hub.customer(try ctx.parameters.require("id"), by: ctx.principal))
        }
        routes.put("customers/:id/notifications") { req, ctx in
            let body = try await HubAPI.decode(NotificationTypes.self, req)
            return try HubAPI.encode(
                try await hub.setNotificationTypes(customerID: try ctx.parameters.require("id"), types: body.types, by: ctx.principal))
        }
        routes.post("customers/:id/keys") { _, ctx in
            let key = try await hub.issueCustomerKey(customerID: try ctx.parameters.require("id"), by: ctx.principal)
            return try HubAPI.encode(IssuedKey(apiKey: key), status: .created)
        }
        routes.delete("keys/:id") { _, ctx in
            try HubAPI.encode(Revoked(revoked: try await hub.revokeKeys(subjectID: try ctx.parameters.require("id"), by: ctx.principal)))
        }
        for (action, suspended) in [("suspend", true), ("resume", false)] {
            routes.post("customers/:id/\(action)") { _, ctx in
                let id = try ctx.parameters.require("id")
                try await hub.setCustomerSuspended(id, suspended: suspended, by: ctx.principal)
                return try HubAPI.encode(CustomerSuspension(id: id, suspended: suspended))
            }
        }
        routes.put("customers/:id/config-overrides") { req, ctx in
            let body = try await HubAPI.collect(req)
            guard let overrides = try? JSONValue.parse(body) else { throw HubError.badRequest("not valid JSON", path: "$") }
            try await hub.setConfigOverrides(customerID: try ctx.parameters.require("id"), overrides: overrides, by: ctx.principal)
            return try HubAPI.encode(Saved(saved: true))
        }
        routes.post("customers/:id/retrieval-unlock") { _, ctx in
            let cleared = try await hub.unlockRetrieval(customerID: try ctx.parameters.require("id"), by: ctx.principal)
            return try HubAPI.encode(RetrievalUnlocked(clearedFailedAttempts: cleared))
        }
        routes.post("customers/:id/passphrase") { _, ctx in
            let passphrase = try await hub.newRetrievalPassphrase(customerID: try ctx.parameters.require("id"), by: ctx.principal)
            return try HubAPI.encode(IssuedPassphrase(passphrase: passphrase), status: .created)
        }
        routes.get("customers/:id/quotas") { _, ctx in
            try HubAPI.encode(try await hub.quotas(customerID: try ctx.parameters.require("id"), by: ctx.principal))
        }
        routes.put("customers/:id/quotas") { req, ctx in
            let body = try await HubAPI.collect(req)
            return try HubAPI.encode(try await hub.setQuotas(customerID: try ctx.parameters.require("id"), body: body, by: ctx.principal))
        }
        routes.post("customers/:id/guests") { req, ctx in
            let body = try await HubAPI.collect(req)
            return try HubAPI.encode(
                try await hub.placeGuest(customerID: try ctx.parameters.require("id"), body: body, by: ctx.principal), status: .created)
        }
        return routes
    }
}
