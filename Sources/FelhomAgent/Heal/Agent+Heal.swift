import FelhomCore
import Foundation
import Proxmox

/// How the agent heals silent controllers (`heal.*`).
public struct HealSettings: Sendable {
    /// Runs `pct exec … systemctl restart felhom-controller`.
    public var runner: any CommandRunner
    public var settings: ControllerHealer.Settings
    public init(runner: any CommandRunner, settings: ControllerHealer.Settings = .init()) {
        self.runner = runner
        self.settings = settings
    }
}

extension Agent {
    /// The healer's remedies: both run through the guest's queue, after every other mutation of it.
    public static func healRemedies(
        backend: PrivilegedBackend, pve: any PVEAPI, node: String, queue: GuestQueue, taskTimeout: Duration
    ) -> ControllerHealer.Remedies {
        ControllerHealer.Remedies(
            restartController: { vmid in try await queue.run(vmid: vmid) { try await backend.restartController(vmid: vmid) } },
            restartGuest: { vmid in
                // One restart: a clean shutdown (forced after 60 s), then a start. The gate allowed `.restart`.
                try await queue.run(vmid: vmid) {
                    _ = try await pve.waitTask(
                        try await pve.shutdownContainer(node: node, vmid: vmid, timeout: 60, forceStop: true), timeout: taskTimeout)
                    _ = try await pve.waitTask(try await pve.startContainer(node: node, vmid: vmid), timeout: taskTimeout)
                }
            })
    }

    /// What runs between cycles too (every long-poll answer, at most `long_poll_seconds` apart):
    /// crash-consistent backups of guests whose controller missed the bound, the storage manifest's
    /// scan (a disk plugged in is seen within seconds), and a healing round.
    /// Time-bound work needs no ticker of its own.
    public func housekeeping() async {
        let now = clock.now()
        for e in updater?.collectVerdict() ?? [] { await post(e) }
        if let backups {
            let started = backups.runOverdue(now: now)
            if !started.isEmpty {
                logger.notice(
                    "no controller called within the bound: backing up \(started.map(String.init).joined(separator: ", ")) crash-consistent")
            }
        }
        if let spec = state.withLock({ $0.lastSpec }) { await storageTick(spec) }
        guard let healer, let tokens = localTokens, let spec = state.withLock({ $0.lastSpec }) else { return }
        let running = Set(spec.guests.filter { $0.runState == .running && !$0.ephemeral }.map(\.vmid))
        let watched = running.intersection(tokens.guests)
        for event in await healer.tick(watched: watched, now: now) {
            await post(event)
        }
    }
}
