// agent
