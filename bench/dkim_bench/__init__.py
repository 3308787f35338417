"""mailsec's DKIM key generation, and its `dkim` check against dkimpy's key-record lookup."""
