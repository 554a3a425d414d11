"""Identity: WeChat login, residents, households and dependants, roles, verification."""
