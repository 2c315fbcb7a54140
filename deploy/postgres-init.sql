-- The alert store lives in its own database beside Airflow's metadata DB.
CREATE DATABASE detections;
