"""mailsec's SPF + DMARC + MX checks against checkdmarc, on the same fixture domains."""
