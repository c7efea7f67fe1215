Console.Error.WriteLine("The AppHost is not wired yet.");
return 1;
