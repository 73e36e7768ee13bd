-- The events brief's init for its MySQL 8 (`eventdb`): compose.yml's mysql service runs it once, on
-- an empty data volume. A node with --events-store mysql takes this table as it is.
CREATE TABLE IF NOT EXISTS processed_events (
  id VARCHAR(36) PRIMARY KEY,
  type ENUM('user_action', 'sensor_data', 'system_log') NOT NULL,
  source VARCHAR(50) NOT NULL,
  user_id VARCHAR(50),
  processed_data JSON,
  processing_time_ms INT,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  processed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  INDEX idx_type_created (type, created_at),
  INDEX idx_user_created (user_id, created_at)
);
