"""What an agent says: message payloads and their JSON Schemas, Home Assistant discovery."""
