"""mailsec's report parser against parsedmarc: records per second and peak memory."""
