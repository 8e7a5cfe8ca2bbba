"""The login-node half of ftc: configs in, a checked plan and rendered files out. Never imports torch."""
