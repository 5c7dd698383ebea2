import FelhomCore
import FelhomHubClient
import Foundation
import Logging
import ServiceLifecycle

/// Fetches the guest's secret bundles from the hub every `interval` and applies them
/// (``SecretsSync``); first of all it finishes a rollout a crash interrupted. Says once when the
/// hub cannot be read and once when it can again.
public struct SecretsService: Service {
    let sync: SecretsSync
    let hub: HubClient
    let guestID: String
    let interval: Duration
    let logger: Logger

    public init(sync: SecretsSync, hub: HubClient, guestID: String, interval: Duration = .seconds(60), logger: Logger) {
        self.sync = sync
        self.hub = hub
        self.guestID = guestID
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            do {
                let resumed = try await sync.resume()
                if !resumed.isEmpty { logger.notice("secrets: finished an interrupted rollout: restarted \(resumed.joined(separator: ", "))") }
            } catch let error as ControllerError { logger.error("secrets: \(error.message)") } catch {}
            var failing = false
            while !Task.isCancelled {
                do {
                    let bundles = try await hub.secretBundles(guestID: guestID)
                    if failing { logger.notice("secrets: the hub's bundles are readable again") }
                    failing = false
                    let outcome = try await sync.apply(bundles)
                    if !outcome.restarted.isEmpty { logger.notice("secrets: restarted \(outcome.restarted.joined(separator: ", ")) one at a time") }
                } catch let error as ControllerError {
                    logger.error("secrets: \(error.message)")
                } catch {
                    if !failing { logger.warning("secrets: cannot read this guest's bundles from the hub: \(error)") }
                    failing = true
                }
                try await Task.sleep(for: interval)
            }
        }
    }
}
