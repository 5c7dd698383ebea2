/// The systemd units `felhom-agent bootstrap` installs, byte for byte the files in
/// `deploy/systemd/` (a test compares them), so the binary needs nothing else at run time.
public enum SystemdUnits {
    public struct Unit: Sendable {
        public var name: String
        public var text: String
    }

    /// The agent and its health gate (the controller's unit goes into the golden template, the hub's onto the hub).
    public static let installed: [Unit] = [
        Unit(
            name: "felhom-agent.service",
            text: """
                # felhom-agent: the host agent on a Proxmox VE node. Install: docs/updates.md ("systemd units").
                #
                # The binary runs from the A/B `current` symlink that self-update flips (docs/updates.md). Whether
                # a new binary stays is decided by felhom-agent-gate.service, never by this unit: Restart=always
                # with no start limit keeps restarting whatever `current` points at, and the gate flips it back
                # to the last good slot when the new binary is not healthy within its window. A start limit here
                # would leave the unit failed before the gate's window ends; the gate's own restart brings it back.
                #
                # Deliberately NO PrivateMounts=, ProtectSystem=, PrivateTmp=, ProtectHome= or ReadOnlyPaths=:
                # the agent mounts customers' disks (USB, by filesystem UUID) that Proxmox VE itself must see, and
                # any private mount namespace or read-only view of the host would hide those mounts from PVE.
                [Unit]
                Description=Felhom agent (Proxmox VE host)
                Documentation=file:/usr/share/doc/felhom/agent.md
                After=network-online.target pve-cluster.service pveproxy.service
                Wants=network-online.target
                StartLimitIntervalSec=0

                [Service]
                Type=simple
                ExecStart=/opt/felhom/agent/current/felhom-agent run --config /etc/felhom/agent.json
                # The PVE token secret (FELHOM_AGENT_PVE_TOKEN_SECRET), mode 0600.
                EnvironmentFile=-/etc/felhom/agent.env
                Restart=always
                RestartSec=5
                # Give an in-flight journal step time to finish on a stop; the journal resumes the rest.
                TimeoutStopSec=90
                KillMode=mixed

                [Install]
                WantedBy=multi-user.target
                """ + "\n"),
        Unit(
            name: "felhom-agent-gate.service",
            text: """
                # felhom-agent-gate: the self-update health gate, outside the agent binary (seed review S2).
                # It does not link the agent's code and is not updated by the A/B mechanism. It watches
                # /opt/felhom/agent/gate.json: after a flip, the new agent must write a healthy health.json
                # within the window, else the gate points `current` back at the last good slot and restarts
                # felhom-agent.service; after a clean window it commits the new slot. docs/updates.md.
                [Unit]
                Description=Felhom agent self-update health gate
                Documentation=file:/usr/share/doc/felhom/updates.md
                After=local-fs.target

                [Service]
                Type=simple
                ExecStart=/usr/local/lib/felhom/felhom-agent-gate watch --root /opt/felhom/agent --restart-unit felhom-agent.service
                Restart=always
                RestartSec=2

                [Install]
                WantedBy=multi-user.target
                """ + "\n"),
    ]

    /// The host's Cloudflare tunnel, installed only once the hub handed the host's connector token
    /// (`state_dir/tunnel.env`) and cloudflared is installed.
    public static let tunnel = Unit(
        name: "felhom-cloudflared.service",
        text: """
            # felhom-cloudflared: the host's Cloudflare tunnel (seed review S4/S5), installed by
            # `felhom-agent bootstrap` once the hub handed the host's connector token, and supervised by
            # felhom-agent (tunnel.enabled): it probes /ready on the metrics address below, reports
            # running|stopped|degraded|unknown and restarts this unit with back-off. docs/agent.md ("Tunnel").
            #
            # The connector token (never a Cloudflare API token) is in /var/lib/felhom-agent/tunnel.env as
            # TUNNEL_TOKEN=…, mode 0600, written by the agent; systemd reads it as root, so the token is
            # neither on the command line (ps) nor readable by the unprivileged user cloudflared runs as.
            # cloudflared itself comes from Cloudflare's apt repository (docs/install.md).
            [Unit]
            Description=Felhom Cloudflare tunnel (cloudflared)
            Documentation=file:/usr/share/doc/felhom/agent.md
            After=network-online.target
            Wants=network-online.target
            ConditionPathExists=/var/lib/felhom-agent/tunnel.env

            [Service]
            Type=simple
            EnvironmentFile=/var/lib/felhom-agent/tunnel.env
            ExecStart=/usr/bin/cloudflared --no-autoupdate tunnel --metrics 127.0.0.1:20241 run
            DynamicUser=yes
            NoNewPrivileges=yes
            ProtectSystem=strict
            ProtectHome=yes
            PrivateTmp=yes
            Restart=on-failure
            RestartSec=10

            [Install]
            WantedBy=multi-user.target
            """ + "\n")
}
