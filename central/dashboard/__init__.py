"""The fleet dashboard: a server-rendered HTTPS web app of the central service (devices, throughput, actions).

``accounts`` users and the audit log in the central store, ``auth`` passwords, roles and sessions,
``fleet`` the device view model, ``live`` the MQTT watcher of status and health, ``events`` the
server-sent-events broadcaster, ``charts`` inline SVG, ``actions`` what a technician may do, ``app`` the
routes, ``server`` uvicorn with TLS.
"""
